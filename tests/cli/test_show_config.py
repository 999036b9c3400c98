"""``rnnlm train --show-config``: the options as resolved, as a YAML file ``--config`` reads back."""

import yaml
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.presets import load_preset
from rnnlm_cli.train.job import resolve_train


def show(*args):
    result = CliRunner().invoke(app, ["train", *args, "--show-config"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_preset_shows_its_hidden_limits_and_reads_back_as_the_same_job(tmp_path):
    text = show("--preset", "wt2-cpu-quick")
    options = yaml.safe_load(text)
    preset = load_preset("wt2-cpu-quick")
    assert {key: options[key] for key in preset} == preset  # max_time 134, max_steps 3600 among them
    assert options["max_time"] == 134 and options["max_steps"] == 3600
    saved = tmp_path / "resolved.yaml"
    saved.write_text(text)
    again, original = resolve_train("c.txt", {}, config_path=str(saved)), resolve_train("c.txt", {}, "wt2-cpu-quick")
    assert (again.model, again.train, again.tokenizer_config) == (original.model, original.train, original.tokenizer_config)


def test_flags_win_and_nothing_is_read_or_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = yaml.safe_load(show("--preset", "wt2-cpu-quick", "--max-time", "60", "--cell", "gru"))
    assert options["max_time"] == 60 and options["cell"] == "gru"
    assert list(tmp_path.iterdir()) == []


def test_options_a_run_fits_to_its_corpus_are_said_to_be_fitted():
    text = show()
    options = yaml.safe_load(text)
    for name in ("emb", "hidden", "layers", "batch_size"):
        assert name not in options and f"# {name}: fitted to the corpus and device" in text
    assert options["bptt"] == 35 and options["adaptive_softmax"] == "auto"
    assert yaml.safe_load(show("--hidden", "64"))["hidden"] == 64


def test_training_without_a_corpus_is_a_usage_error():
    result = CliRunner().invoke(app, ["train", "--preset", "wt2-cpu-quick"])
    assert result.exit_code == 2
    assert "missing CORPUS" in result.output


def test_show_config_into_a_file_the_job_names_is_refused(tmp_path, saved_model):
    import os
    import subprocess
    import sys

    model = saved_model[0]
    before = model.read_bytes()
    env = {k: v for k, v in os.environ.items() if k != "RNNLM_DEBUG"}
    with open(model, "ab") as stdout:  # rnnlm train --show-config --init-from m.pt >> m.pt
        done = subprocess.run([sys.executable, "-m", "rnnlm_cli", "train", "--show-config", "--init-from", str(model)],
                              stdout=stdout, stderr=subprocess.PIPE, env=env, timeout=120)
    assert done.returncode == 2 and b"--init-from" in done.stderr, done.stderr
    assert model.read_bytes() == before
