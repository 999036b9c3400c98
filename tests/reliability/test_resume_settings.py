"""What a resumed or re-initialised run takes from the saved model, and what it refuses."""

from pathlib import Path

from typer.testing import CliRunner

from rnnlm_cli.store.checkpoint import load_checkpoint
from rnnlm_cli.cli import app

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "train.txt"
SHAPE = ["--hidden", "24", "--emb", "8", "--layers", "1"]
RUN = ["--batch-size", "4", "--bptt", "10", "--log-interval", "1000"]


def train(*args):
    return CliRunner().invoke(app, ["train", *map(str, args)])


def corpus(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("\n".join(SAMPLE.read_text().splitlines()[:600]) + "\n")
    return path


def test_resume_takes_the_shape_from_the_saved_state(tmp_path):
    text, out = corpus(tmp_path), tmp_path / "m.pt"
    assert train(text, *SHAPE, *RUN, "--max-steps", "5", "--out", out).exit_code == 0
    result = train(text, *RUN, "--max-steps", "10", "--resume", "auto", "--out", out)  # no shape flags
    assert result.exit_code == 0, result.stderr
    assert load_checkpoint(tmp_path / "m.last.pt").model_config.hidden == 24
    assert load_checkpoint(tmp_path / "m.last.pt").training_state["progress"]["step"] == 10


CHANGES = ((["--batch-size", "8", "--bptt", "10"], "batch-size"),
           (["--batch-size", "4", "--bptt", "10", "--optimizer", "sgd"], "optimizer"),
           (["--batch-size", "4", "--bptt", "10", "--hidden", "32"], "hidden"))


def test_a_named_state_refuses_settings_it_cannot_serve_and_says_how_to_start_afresh(tmp_path):
    text, out = corpus(tmp_path), tmp_path / "m.pt"
    assert train(text, *SHAPE, *RUN, "--max-steps", "5", "--out", out).exit_code == 0
    before = (tmp_path / "m.last.pt").read_bytes()
    for change, name in CHANGES:
        result = train(text, *change, "--max-steps", "10", "--resume", tmp_path / "m.last.pt", "--out", out)
        assert result.exit_code == 2, (change, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("rnnlm: error")]
        assert len(errors) == 1 and name in errors[0], result.stderr
        assert "start a new run without --resume" in errors[0]
    assert (tmp_path / "m.last.pt").read_bytes() == before


def test_resume_auto_starts_afresh_when_todays_options_cannot_continue_the_state(tmp_path):
    """A cron job that changed an option does not fail every night for it: the state that
    cannot serve today's options is replaced by a new run, with one line saying why."""
    text, out = corpus(tmp_path), tmp_path / "m.pt"
    for change, name in CHANGES:
        assert train(text, *SHAPE, *RUN, "--max-steps", "5", "--out", out).exit_code == 0
        result = train(text, *SHAPE[2:], *change, "--max-steps", "10", "--resume", "auto", "--out", out)
        assert result.exit_code == 0, (change, result.stderr)
        said = [line for line in result.stderr.splitlines() if "cannot be resumed with today's options" in line]
        assert len(said) == 1 and name in said[0] and said[0].startswith("starting a new run from scratch"), said
        state = load_checkpoint(tmp_path / "m.last.pt")
        assert state.training_state["progress"]["step"] == 10  # a new run of 10 steps, not 5 more
        if name == "optimizer":
            assert state.train_config["optimizer"] == "sgd"


def test_resume_auto_tells_a_changed_tokenizer_option_from_a_changed_corpus(tmp_path):
    """Another --max-size gives other ids for the same text: under --resume auto that is a
    changed option (a new run), while another text is another job's state (kept, 65)."""
    text, out = corpus(tmp_path), tmp_path / "m.pt"
    assert train(text, *SHAPE, *RUN, "--max-steps", "5", "--out", out).exit_code == 0
    result = train(text, *SHAPE, *RUN, "--max-size", "50", "--max-steps", "10", "--resume", "auto", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert "its vocabulary was learned with other --max-size" in result.stderr
    assert load_checkpoint(out).tokenizer["pieces"].__len__() == 50
    saved = (tmp_path / "m.last.pt").read_bytes()
    other = tmp_path / "other.txt"
    other.write_text("\n".join(SAMPLE.read_text().splitlines()[600:1200]) + "\n")
    refused = train(other, *SHAPE, *RUN, "--max-size", "50", "--max-steps", "10", "--resume", "auto", "--out", out)
    assert refused.exit_code == 65 and "the training data changed" in refused.stderr
    assert (tmp_path / "m.last.pt").read_bytes() == saved


def test_init_from_accepts_new_regularisation_but_not_a_new_shape(tmp_path):
    text, first = corpus(tmp_path), tmp_path / "a" / "m.pt"
    assert train(text, *SHAPE, *RUN, "--max-steps", "3", "--dropout", "0.2", "--out", first).exit_code == 0
    second = tmp_path / "b" / "m.pt"
    result = train(text, *RUN, "--max-steps", "3", "--init-from", first, "--dropout", "0.05",
                   "--weight-drop", "0.1", "--out", second)
    assert result.exit_code == 0, result.stderr
    config = load_checkpoint(second).model_config
    assert (config.hidden, config.dropout, config.weight_drop) == (24, 0.05, 0.1)
    refused = train(text, *RUN, "--init-from", first, "--emb", "16", "--out", tmp_path / "c" / "m.pt")
    assert refused.exit_code == 2 and "--emb" in refused.stderr


def test_a_budget_stop_at_an_epoch_end_is_validated_once(tmp_path):
    import json
    import re

    text, out = corpus(tmp_path), tmp_path / "m.pt"
    first = train(text, *SHAPE, *RUN, "--max-steps", "1", "--out", tmp_path / "probe.pt")
    per_epoch = int(re.search(r"([\d,]+) steps per epoch", first.stderr).group(1).replace(",", ""))
    assert train(text, *SHAPE, *RUN, "--max-steps", per_epoch, "--out", out).exit_code == 0
    # Resuming a finished budget again trains nothing and validates nothing.
    assert train(text, *SHAPE, *RUN, "--max-steps", per_epoch, "--resume", "auto", "--out", out).exit_code == 0
    result = train(text, *SHAPE, *RUN, "--max-steps", per_epoch + 3, "--resume", "auto", "--out", out)
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "m.metrics.jsonl").read_text().splitlines()]
    valid_steps = [r["step"] for r in records if r["event"] == "valid"]
    assert valid_steps == [per_epoch, per_epoch + 3]
    assert load_checkpoint(tmp_path / "m.last.pt").training_state["progress"]["epoch"] == 2
