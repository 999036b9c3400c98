import dataclasses

import pytest
from typer.testing import CliRunner

from rnnlm_cli.checkpoint import load_checkpoint
from rnnlm_cli.cli import app
from rnnlm_cli.config import ModelConfig, TokenizerConfig, TrainConfig, resolve
from rnnlm_cli.errors import UsageError
from rnnlm_cli.presets import list_presets, load_preset


@pytest.mark.parametrize("name", sorted(list_presets()))
def test_every_shipped_preset_is_a_valid_configuration(name):
    values = load_preset(name)
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    tokenizer_keys = {f.name for f in dataclasses.fields(TokenizerConfig)} | {"tokenizer"}
    assert set(values) <= model_keys | train_keys | tokenizer_keys, set(values) - model_keys - train_keys
    resolve(ModelConfig, {k: v for k, v in values.items() if k in model_keys}, {}, vocab_size=100)
    resolve(TrainConfig, values, {})
    assert list_presets()[name]  # described in --help


def test_unknown_preset_is_a_usage_error():
    with pytest.raises(UsageError, match="sample-cpu"):
        load_preset("no-such-preset")


def test_preset_then_config_then_flags(tmp_path, tiny_corpus):
    config = tmp_path / "own.yaml"
    config.write_text("hidden: 24\nepochs: 1\nmax_time: 0\n")
    valid = tmp_path / "valid.txt"
    valid.write_text(tiny_corpus.read_text(encoding="utf-8"), encoding="utf-8")  # the same text, another file
    tiny = ["--emb", "8", "--batch-size", "2", "--bptt", "4", "--max-steps", "2"]
    runs = {
        "preset": ([], 256, 1),                   # sample-cpu: hidden 256, layers 1
        "config": (["--config", str(config)], 24, 1),
        "flags": (["--config", str(config), "--hidden", "20", "--layers", "2"], 20, 2),
    }
    for name, (extra, hidden, layers) in runs.items():
        out = tmp_path / name / "model.pt"
        result = CliRunner().invoke(app, ["train", str(tiny_corpus), "--preset", "sample-cpu", *tiny, *extra,
                                          "--valid", str(valid), "--out", str(out)])
        assert result.exit_code == 0, result.stderr
        config_of = load_checkpoint(out).model_config
        assert (config_of.hidden, config_of.layers) == (hidden, layers), name
