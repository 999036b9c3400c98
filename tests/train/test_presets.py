import pytest
from typer.testing import CliRunner

from rnnlm_cli.store.checkpoint import load_checkpoint
from rnnlm_cli.cli import app
from rnnlm_cli.errors import InputMissingError, UsageError
from rnnlm_cli.presets import list_presets, load_preset
from rnnlm_cli.train.job import resolve_train

JOB_FIELDS = {"tokenizer", "valid", "out", "strict", "resume", "init_from", "plot"}


def landed(job, key: str):
    """Where option ``key`` ends up in a resolved job (--vocab-size is the tokenizer's)."""
    if key in JOB_FIELDS:
        return getattr(job, key)
    if key == "promote_if_better":
        return job.promote_to
    for config in (job.tokenizer_config, job.model, job.train):
        if hasattr(config, key):
            return getattr(config, key)
    raise AssertionError(f"{key} went nowhere")


@pytest.mark.parametrize("name", sorted(list_presets()))
def test_every_shipped_preset_is_a_valid_configuration(name):
    values = load_preset(name)
    job = resolve_train("corpus.txt", {}, preset=name)
    assert {key: landed(job, key) for key in values} == values
    summary = list_presets()[name]  # described in --help, in one whole sentence (the file's first line)
    assert summary.endswith(".") and summary[0].isupper(), summary


def test_defaults_then_preset_then_config_then_flags(tmp_path):
    config = tmp_path / "own.yaml"
    config.write_text("hidden: 24\nepochs: 1\ntokenizer: char\nvocab-size: 500\nvalid: v.txt\nstrict: true\n")
    job = resolve_train("c.txt", {"hidden": 20, "out": "m.pt", "strict": None, "lr": None}, "sample-cpu", str(config))
    # sample-cpu: cell lstm, emb 64, hidden 256, layers 1, dropout 0.3, lr 0.003, clip 1.0, epochs 5.
    assert (job.model.hidden, job.model.layers, job.model.emb, job.model.impl) == (20, 1, 64, "fused")
    assert (job.train.epochs, job.train.lr, job.train.clip, job.train.seed) == (1, 0.003, 1.0, 1234)
    assert (job.tokenizer, job.tokenizer_config.vocab_size, job.tokenizer_config.kind) == ("char", 500, "word")
    assert job.model.vocab_size == 2  # a stand-in until the tokenizer is known
    assert (job.corpus, job.out, job.valid, job.strict, job.promote_to, job.plot) == ("c.txt", "m.pt", "v.txt", True,
                                                                                     None, False)
    # Model options given anywhere but the defaults, in ModelConfig's order (checked against --init-from).
    assert job.model_flags == ("cell", "emb", "hidden", "layers", "dropout")


def test_nothing_given_is_the_defaults():
    job = resolve_train("c.txt", {"out": None, "hidden": None})
    assert (job.out, job.model.hidden, job.train.lr, job.tokenizer, job.model_flags) == ("model.pt", 256, 0.002,
                                                                                         None, ())


def test_a_null_in_yaml_is_not_given(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("out: null\nhidden: null\n")
    job = resolve_train("c.txt", {}, config_path=str(config))
    assert (job.out, job.model.hidden) == ("model.pt", 256)


@pytest.mark.parametrize("text,says", [
    ("hiden: 1\nkind: char\nvocab_size: 9\n", "unknown option(s) hiden, kind"),  # --tokenizer names the kind
    ("plot: 1\n", "option plot: expected true or false, got 1"),
    ("promote-if-better: ''\n", "option promote_if_better: expected a file name"),
    ("init_from: 12\n", "option init_from: expected a file name (quote it if it looks like a number), got 12"),
])
def test_bad_config_keys_are_usage_errors(tmp_path, text, says):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(UsageError) as caught:
        resolve_train("c.txt", {}, config_path=str(config))
    assert str(caught.value).startswith(f"{config}: ") and says in str(caught.value), str(caught.value)
    assert caught.value.exit_code == 2


def test_a_missing_config_file_is_missing_input(tmp_path):
    with pytest.raises(InputMissingError, match="no such config file") as caught:
        resolve_train("c.txt", {}, config_path=str(tmp_path / "none.yaml"))
    assert caught.value.exit_code == 66


def test_a_flag_no_class_holds_is_a_programming_error():
    with pytest.raises(TypeError, match="json_output"):
        resolve_train("c.txt", {"json_output": True, "hidden": 8})


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
