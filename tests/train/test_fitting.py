"""A run fitted to its corpus and device: only the options nobody set are chosen, each choice is said."""

import pytest
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.config import TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.store.checkpoint import load_checkpoint
from rnnlm_cli.train.fitting import SEGMENTS_PER_STREAM, batch_limit, fit_job
from rnnlm_cli.train.job import TrainJob, resolve_train


def fitted(flags=None, preset=None, tokens=2_000_000, kind="word", device="cpu", fixed_shape=False):
    notes: list[str] = []
    job = fit_job(resolve_train("corpus.txt", flags or {}, preset=preset), tokens, kind, device,
                  fixed_shape=fixed_shape, notes=notes)
    return job, notes


def shape(job):
    return job.model.layers, job.model.hidden, job.model.emb, job.train.batch_size


def test_a_bare_command_gets_a_shape_and_batch_for_its_corpus_and_device():
    job, notes = fitted()
    assert shape(job) == (1, 256, 256, 32)
    assert len(notes) == 1 and ("1x256 lstm, 256-wide embeddings, batch 32, --lr 0.008: chosen for a 2,000,000-token "
                                "word corpus") in notes[0]
    assert job.train.lr == 0.008 and fitted(tokens=300_000)[0].train.lr == 0.004
    assert fitted(kind="char")[0].train.lr == 0.002 and fitted(device="cuda")[0].train.lr == 0.003
    assert shape(fitted(tokens=300_000)[0]) == (1, 256, 128, 32)
    # From half a million tokens (a PTB-sized corpus among them) the wide embeddings pay.
    assert shape(fitted(tokens=600_000)[0]) == (1, 256, 256, 32) and fitted(tokens=600_000)[0].train.lr == 0.008
    assert shape(fitted(kind="char")[0]) == (1, 512, 64, 32)
    assert shape(fitted(device="cuda")[0]) == (2, 650, 650, 64)
    assert shape(fitted(device="cuda", tokens=200_000_000)[0]) == (2, 1024, 1024, 128)


def test_the_batch_leaves_each_stream_enough_segments():
    # 20,000 tokens at bptt 35 leave room for 11 streams of 50 segments: the power of two below is 8.
    assert batch_limit(20_000, 35) == 20_000 // (35 * SEGMENTS_PER_STREAM) == 11
    job, _ = fitted(tokens=20_000)
    assert job.train.batch_size == 8
    assert fitted(tokens=100)[0].train.batch_size == 1


def test_what_the_user_gave_is_kept():
    job, notes = fitted({"hidden": 100, "cell": "gru"})
    assert (job.model.hidden, job.model.layers, job.model.emb) == (100, 1, 256)  # the others still fitted
    assert notes[0].startswith("1x100 gru, 256-wide embeddings, batch 32, --lr 0.008: chosen for")
    assert notes[0].endswith("(--layers/--emb/--batch-size/--lr to choose yourself)")
    job, notes = fitted({"batch_size": 500}, tokens=20_000)  # too many streams: refused later, not changed
    assert job.train.batch_size == 500 and job.model.hidden == 256 and "batch" not in notes[0]
    assert notes[0].endswith("(--layers/--hidden/--emb/--lr to choose yourself)")
    everything = {"emb": 16, "hidden": 32, "layers": 3, "batch_size": 7, "lr": 0.1}
    job, notes = fitted(everything)
    assert shape(job) == (3, 32, 16, 7) and job.train.lr == 0.1 and notes == []
    # An SGD rate is of another scale: the default stays.
    assert fitted({"optimizer": "sgd"})[0].train.lr == TrainConfig().lr


def test_a_tied_model_gets_embeddings_as_wide_as_its_output():
    job, _ = fitted({"tied": True, "adaptive_softmax": ""}, tokens=300_000)
    assert job.model.emb == job.model.hidden == 256


def test_a_saved_shape_is_not_chosen_but_the_batch_is():
    job, notes = fitted(fixed_shape=True)
    assert (job.model.hidden, job.model.layers, job.model.emb) == (256, 2, 128)  # the defaults, as resolved
    assert job.train.batch_size == 32 and notes[0].startswith("batch 32: chosen")
    assert job.train.lr == TrainConfig().lr  # the rate goes with a shape the run did not choose


def test_a_job_built_in_code_is_left_as_it_is():
    job = TrainJob(corpus="c.txt", out="m.pt", model=ModelConfig(vocab_size=2), train=TrainConfig())
    assert fit_job(job, 10, "word", "cpu", fixed_shape=False) is job


def test_a_preset_too_big_for_a_small_corpus_says_what_it_changed():
    job, notes = fitted(preset="wt2-cpu-quick", tokens=30_000)
    notes = [note for note in notes if note.startswith("preset")]  # the preset leaves its width to the run
    # 30,000 tokens fill 17 streams of 50 segments: 16; 2 epochs would be 106 steps of the 3,600 planned.
    assert job.train.batch_size == 16 and job.train.epochs == 68
    assert "its batch of 32 streams" in notes[0] and "using 16" in notes[0]
    assert "2 epochs of this small corpus are 106 steps, not the 3,600 it plans; training 68 epochs" in notes[1]
    assert (job.model.hidden, job.model.emb) == (256, 256)  # the preset's shape stays


def test_a_preset_on_a_large_corpus_says_how_little_of_it_the_budget_covers():
    job, notes = fitted(preset="wt2-cpu-quick", tokens=50_000_000)
    notes = [note for note in notes if note.startswith("preset")]  # the preset leaves its width to the run
    assert job.train.batch_size == 32 and job.train.max_steps == 3600
    steps_per_epoch = (50_000_000 - 1) // 32 // 35
    assert notes == [f"preset wt2-cpu-quick: its 3,600 steps cover {3600 / steps_per_epoch:.2f} epochs of this large "
                     "corpus; give --max-steps 0 and --max-time SECONDS to train longer"]


def test_a_flag_overrides_what_the_preset_would_fit():
    job, notes = fitted({"batch_size": 64, "epochs": 2}, preset="wt2-cpu-quick", tokens=60_000)
    notes = [note for note in notes if note.startswith("preset")]  # the preset leaves its width to the run
    assert (job.train.batch_size, job.train.epochs) == (64, 2) and notes == []


@pytest.fixture
def corpus(tmp_path):
    words = [f"w{i % 37}" for i in range(12_000)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(" ".join(words[i:i + 10]) for i in range(0, len(words), 10)) + "\n")
    return path


def test_the_bare_command_trains_the_shape_it_says(corpus, tmp_path):
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(app, ["train", str(corpus), "--max-steps", "1", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = load_checkpoint(out).model_config
    assert (config.layers, config.hidden, config.emb) == (1, 256, 128)
    # The corpus minus the held-out part: about 12,600 tokens, 7 streams of 50 segments -> 4.
    assert "1x256 lstm, 128-wide embeddings, batch 4, --lr 0.004: chosen for a" in result.output
    assert load_checkpoint(out).train_config["batch_size"] == 4


def test_a_resumed_run_keeps_its_own_batch(corpus, tmp_path):
    out = tmp_path / "m.pt"
    small = ["--emb", "8", "--hidden", "8", "--layers", "1", "--device", "cpu", "--out", str(out)]
    first = CliRunner().invoke(app, ["train", str(corpus), "--max-steps", "2", "--batch-size", "2", *small])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(app, ["train", str(corpus), "--max-steps", "4", "--resume", "auto", *small])
    assert second.exit_code == 0, second.output
    assert "batch" not in second.output.split("resuming")[0].lower().replace("batch-size", "")
    assert load_checkpoint(str(out).replace(".pt", ".last.pt")).train_config["batch_size"] == 2


def test_a_time_limit_alone_lets_the_clock_end_the_run():
    job, notes = fitted({"max_time": 120.0})
    assert job.train.epochs == 1000 and notes[-1].startswith("--max-time 120 ends the run")
    assert fitted({"max_time": 120.0, "epochs": 3})[0].train.epochs == 3
    assert fitted({"max_time": 120.0, "max_steps": 50})[0].train.epochs == TrainConfig().epochs
    assert fitted()[0].train.epochs == TrainConfig().epochs  # no clock: the epochs bound the run
