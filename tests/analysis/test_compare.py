"""rnnlm compare: the variants it plans, how it continues, and its figures against their sources."""

from __future__ import annotations

import json
import math
import os
import statistics
import sys

import pytest
from typer.testing import CliRunner

from rnnlm_cli.analysis import compare
from rnnlm_cli.analysis.compare import Comparison, RunResult, plan_runs, run_comparison, summarize, valid_curve
from rnnlm_cli.analysis.variants import Variant, grid, read_variant_file
from rnnlm_cli.cli import app
from rnnlm_cli.errors import RnnlmError, UsageError


def test_grid_is_the_product_of_the_values_typed_as_yaml():
    variants = grid(["cell=lstm,gru", "dropout=0,0.25"])
    assert [v.name for v in variants] == ["cell=lstm,dropout=0", "cell=lstm,dropout=0.25",
                                          "cell=gru,dropout=0", "cell=gru,dropout=0.25"]
    assert variants[1].options == {"cell": "lstm", "dropout": 0.25}
    assert grid(["tied=true"])[0].options == {"tied": True}
    assert grid(["batch-size=16"])[0].options == {"batch_size": 16}


@pytest.mark.parametrize("spec, message", [
    ("cell", "expected KEY=VALUE1"), ("cell=lstm,,gru", "expected KEY=VALUE1"), ("colour=red", "unknown option"),
    ("out=x", "set by rnnlm compare"), ("max_time=5", "set by rnnlm compare"), ("cell=lstm,lstm", "listed twice"),
    ("cell=a/b", "cannot name a folder"),
])
def test_grid_refuses(spec, message):
    with pytest.raises(UsageError, match=message):
        grid([spec])


def test_variant_file(tmp_path):
    path = tmp_path / "variants.yaml"
    path.write_text("base:\n  hidden: 32\nsmall:\n  emb: 16\nplain:\ntied:\n  tied: true\n  dropout-emb: 0.1\n")
    base, variants = read_variant_file(str(path))
    assert base == {"hidden": 32}
    assert variants == [Variant("small", {"emb": 16}), Variant("plain", {}),
                        Variant("tied", {"tied": True, "dropout_emb": 0.1})]


@pytest.mark.parametrize("text, message", [
    ("a: &x {hidden: 2}\nb: *x\n", "aliases"), ("a:\n  hidden: [1, 2]\n", "flat mapping"),
    ("a:\n  b:\n    hidden: 2\n", "flat mapping"), ("- a\n", "mapping of variant names"),
    ("base:\n  hidden: 2\n", "no variants"), ("a:\n  nope: 1\n", "unknown option"),
])
def test_variant_file_refuses(tmp_path, text, message):
    path = tmp_path / "variants.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        read_variant_file(str(path))


def test_runs_have_one_folder_each_and_consecutive_seeds(tmp_path):
    comparison = Comparison(corpus="c", valid="v", out=str(tmp_path), budget=10, repeat=2, seed=7,
                            variants=(Variant("cell=rnn", {"cell": "rnn"}), Variant("x", {"seed": 100})))
    runs = plan_runs(comparison)
    assert [(os.path.relpath(r.folder, tmp_path), r.seed) for r in runs] == [
        ("cell=rnn/seed7", 7), ("cell=rnn/seed8", 8), ("x/seed100", 100), ("x/seed101", 101)]
    command = compare.train_command(comparison, runs[0])
    assert command[command.index("--max-time") + 1] == "10.0" and "--resume" in command
    assert command[command.index("--max-steps") + 1] == "0"  # the clock alone ends the run


def result(variant, seed, **figures):
    values = dict(valid_ppl=10.0, test_ppl=None, params=100, tokens_per_s=1000.0, steps=5, train_seconds=1.0,
                  reach=None, pair_accuracy=None)
    values.update(figures)
    return RunResult(variant=variant, seed=seed, folder="f", **values)


def test_summary_is_mean_and_sample_std():
    runs = [result("a", 1, valid_ppl=10.0, reach=4), result("a", 2, valid_ppl=12.0, reach=6),
            result("a", 3, valid_ppl=17.0, reach=8), result("b", 1, valid_ppl=20.0, reach=None)]
    a, b = summarize(runs)
    assert (a.variant, a.runs, b.runs) == ("a", 3, 1)
    assert a.figures["valid_ppl"] == pytest.approx((13.0, statistics.stdev([10.0, 12.0, 17.0])))
    assert a.figures["reach"] == pytest.approx((6.0, 2.0))
    assert b.figures["valid_ppl"] == (20.0, 0.0)
    assert b.figures["reach"] is None and a.figures["test_ppl"] is None


FAKE_TRAINER = r"""
import json, os, sys
out = sys.argv[sys.argv.index("--out") + 1]
folder = os.path.dirname(out)
with open(os.path.join(folder, "calls"), "a") as f:
    f.write("x")
if os.path.basename(folder) == "fail":
    sys.exit(9)
if os.path.basename(folder) == "interrupted":
    sys.exit(130)  # what rnnlm train exits with when SIGINT stops it after saving its state
with open(os.path.join(folder, "model.metrics.jsonl"), "w") as f:
    f.write(json.dumps({"event": "valid", "train_seconds": 1.0, "valid_ppl": 30.0}) + "\n")
    f.write(json.dumps({"event": "valid", "train_seconds": 2.0, "valid_ppl": 20.0}) + "\n")
print(json.dumps({"best_valid_ppl": 20.0, "tokens_per_second": 500.0, "steps": 3, "seconds": 2.0}))
"""


@pytest.fixture
def fake_trainer(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAINER)
    monkeypatch.setattr(compare, "train_command", lambda comparison, run: [sys.executable, str(script), "--out", run.model])


def fake_measure(comparison, run, trained):
    return result(run.variant.name, run.seed, valid_ppl=trained["best_valid_ppl"], steps=trained["steps"])


def calls(folder):
    with open(os.path.join(folder, "calls")) as handle:
        return len(handle.read())


def inputs(tmp_path, corpus="a b c\n", valid="a b\n"):
    """Paths of a corpus and a validation text with these contents."""
    (tmp_path / "c.txt").write_text(corpus)
    (tmp_path / "v.txt").write_text(valid)
    return dict(corpus=str(tmp_path / "c.txt"), valid=str(tmp_path / "v.txt"))


def test_a_second_run_keeps_what_is_done(tmp_path, fake_trainer):
    comparison = Comparison(**inputs(tmp_path), out=str(tmp_path / "out"), budget=1,
                            variants=(Variant("a", {"cell": "rnn"}), Variant("b", {"cell": "gru"})))
    first = run_comparison(comparison, fake_measure)
    assert [r.valid_ppl for r in first] == [20.0, 20.0]
    again = run_comparison(comparison, fake_measure)
    assert again == first
    assert [calls(run.folder) for run in plan_runs(comparison)] == [1, 1]  # trained once each
    assert valid_curve(os.path.join(plan_runs(comparison)[0].folder, "model.metrics.jsonl")) == ([1.0, 2.0], [30.0, 20.0])

    # The same folder with another budget is another comparison: refused, not mixed in.
    other = Comparison(**inputs(tmp_path), out=str(tmp_path / "out"), budget=2, variants=comparison.variants)
    with pytest.raises(UsageError, match="another budget"):
        run_comparison(other, fake_measure)


def test_a_failed_run_stops_the_comparison_and_the_next_call_retries_it(tmp_path, fake_trainer):
    comparison = Comparison(**inputs(tmp_path), out=str(tmp_path / "out"), budget=1,
                            variants=(Variant("a", {}), Variant("fail", {}), Variant("c", {})))
    with pytest.raises(RnnlmError, match="exit 9.*run the same command again"):
        run_comparison(comparison, fake_measure)
    a, failed, c = plan_runs(comparison)
    assert os.path.exists(a.file("train.json")) and not os.path.exists(failed.file("train.json"))
    assert not os.path.exists(c.folder + "/calls")  # runs go in order: c was never started
    with pytest.raises(RnnlmError):
        run_comparison(comparison, fake_measure)
    assert calls(a.folder) == 1 and calls(failed.folder) == 2


def test_an_interrupted_run_stops_the_comparison_as_an_interruption(tmp_path, fake_trainer):
    from rnnlm_cli.errors import TrainingInterrupted

    comparison = Comparison(**inputs(tmp_path), out=str(tmp_path / "out"), budget=1,
                            variants=(Variant("interrupted", {}),))
    with pytest.raises(TrainingInterrupted, match="stopped by SIGINT.*run the same command again") as caught:
        run_comparison(comparison, fake_measure)
    assert caught.value.exit_code == 130


def test_slots_run_trainings_side_by_side(tmp_path, fake_trainer):
    comparison = Comparison(**inputs(tmp_path), out=str(tmp_path / "out"), budget=1,
                            variants=tuple(Variant(n, {}) for n in "abc"))
    results = run_comparison(comparison, fake_measure, slots=[{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}])
    assert [r.variant for r in results] == ["a", "b", "c"]


def test_compare_end_to_end(tmp_path, tiny_corpus):
    """Two real runs: the table's figures are those of the runs' own files and of 'rnnlm eval'."""
    from rnnlm_cli.score.evaluate import evaluate_file
    from rnnlm_cli.store.checkpoint import load_model
    import torch

    out = tmp_path / "cmp"
    valid = tmp_path / "valid.txt"
    valid.write_text(tiny_corpus.read_text() * 8)  # long enough for the gradient reach's windows
    args = ["compare", str(tiny_corpus), "--valid", str(valid), "--test", str(tiny_corpus), "--budget", "1",
            "--vary", "cell=rnn,gru", "--out", str(out), "--json", "--device", "cpu"]
    config = tmp_path / "shared.yaml"
    config.write_text("hidden: 8\nemb: 8\nbatch_size: 4\nbptt: 5\n")
    result = CliRunner().invoke(app, args + ["--config", str(config)], env={"RNNLM_DEBUG": None})
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [s["variant"] for s in report["summary"]] == ["cell=rnn", "cell=gru"]
    for run in report["runs"]:
        model, tokenizer, checkpoint = load_model(os.path.join(run["folder"], "model.pt"))
        assert model.config.cell == run["variant"].split("=")[1] and model.config.hidden == 8
        assert run["valid_ppl"] == pytest.approx(checkpoint.metrics["valid_ppl"], rel=1e-6)
        scored = evaluate_file(model, tokenizer, str(tiny_corpus), torch.device("cpu"))
        assert run["test_ppl"] == pytest.approx(scored.ppl, rel=1e-6)
        assert run["params"] == sum(p.numel() for p in model.parameters())
        assert run["reach"] is None or 1 <= run["reach"] <= 100
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert math.isfinite(report["summary"][0]["valid_ppl"]["mean"])


# ---------------------------------------------------------------- what makes figures stale, and what is refused


def counting_measure(comparison, run, trained):
    """Figures that depend on the test file: its line count as the test perplexity."""
    with open(comparison.test) as handle:
        lines = len(handle.readlines())
    return result(run.variant.name, run.seed, valid_ppl=trained["best_valid_ppl"], test_ppl=float(lines))


def test_another_test_file_is_measured_again_without_training_again(tmp_path, fake_trainer):
    test = tmp_path / "test.txt"
    test.write_text("x\n" * 3)
    comparison = Comparison(**inputs(tmp_path), out=str(tmp_path / "out"), budget=1, test=str(test),
                            variants=(Variant("a", {}),))
    assert [r.test_ppl for r in run_comparison(comparison, counting_measure)] == [3.0]
    test.write_text("x\n" * 5)  # the same name, other contents
    said = []
    assert [r.test_ppl for r in run_comparison(comparison, counting_measure, say=said.append)] == [5.0]
    assert calls(plan_runs(comparison)[0].folder) == 1  # trained once, measured twice
    assert any("kept and measured" in line for line in said)
    # The same contents under another name: the figures stand.
    moved = tmp_path / "moved.txt"
    moved.write_text("x\n" * 5)
    again = Comparison(**{**vars(comparison), "test": str(moved)})
    said.clear()
    assert [r.test_ppl for r in run_comparison(again, counting_measure, say=said.append)] == [5.0]
    assert any("1 of 1 runs already done" in line for line in said)


def test_a_corpus_changed_in_place_is_another_comparison(tmp_path, fake_trainer):
    comparison = Comparison(**inputs(tmp_path), out=str(tmp_path / "out"), budget=1, variants=(Variant("a", {}),))
    run_comparison(comparison, fake_measure)
    inputs(tmp_path, corpus="a b c d\n")
    with pytest.raises(UsageError, match="another corpus"):
        run_comparison(comparison, fake_measure)


@pytest.mark.parametrize("bad", [{"dropout": 7}, {"seed": 1.5}, {"hidden": "wide"}, {"cell": "nope"}])
def test_a_bad_value_in_any_variant_is_refused_before_any_run_trains(tmp_path, fake_trainer, bad):
    comparison = Comparison(**inputs(tmp_path), out=str(tmp_path / "out"), budget=1,
                            variants=(Variant("good", {"dropout": 0.1}), Variant("bad", bad)))
    with pytest.raises(UsageError, match="variant bad"):
        run_comparison(comparison, fake_measure)
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def test_grids_and_names_too_large_are_refused_before_they_are_built():
    # Five options of 60 values: 777,600,000 variants, refused from the counts alone.
    specs = [f"{key}={','.join(str(i) for i in range(1, 61))}" for key in ("hidden", "emb", "bptt", "layers", "seed")]
    with pytest.raises(UsageError, match="777,600,000 variants"):
        grid(specs)
    with pytest.raises(UsageError, match="300 characters"):
        grid(["cell=" + "a" * 295])


def test_an_empty_out_is_refused(tmp_path):
    with pytest.raises(UsageError, match="--out"):
        Comparison(**inputs(tmp_path), out="", budget=1, variants=(Variant("a", {}),))


@pytest.mark.parametrize("name, text", [("spec.json", "[1, 2]"), ("train.json", '{"best_valid_ppl": "x"}'),
                                        ("train.json", "[]")])
def test_a_damaged_record_is_refused_by_name(tmp_path, fake_trainer, name, text):
    from rnnlm_cli.errors import DataError

    comparison = Comparison(**inputs(tmp_path), out=str(tmp_path / "out"), budget=1, variants=(Variant("a", {}),))
    run_comparison(comparison, fake_measure)
    run = plan_runs(comparison)[0]
    os.remove(run.file("result.json"))
    with open(run.file(name), "w") as handle:
        handle.write(text)
    with pytest.raises(DataError, match=name):
        run_comparison(comparison, fake_measure)


@pytest.mark.parametrize("text", ['{"valid_ppl": "x"}', '{"variant": 1}', "[]", "{", '{"valid_ppl": NaN}'])
def test_a_damaged_result_is_measured_again(tmp_path, fake_trainer, text):
    comparison = Comparison(**inputs(tmp_path), out=str(tmp_path / "out"), budget=1, variants=(Variant("a", {}),))
    first = run_comparison(comparison, fake_measure)
    run = plan_runs(comparison)[0]
    with open(run.file("result.json"), "w") as handle:
        handle.write(text)
    assert run_comparison(comparison, fake_measure) == first
    assert calls(run.folder) == 1


@pytest.mark.parametrize("code, kind", [(75, "LockedError"), (65, "RnnlmError"), (2, "RnnlmError")])
def test_a_trainings_input_and_lock_exits_are_the_comparisons(tmp_path, monkeypatch, code, kind):
    script = tmp_path / "exit.py"
    script.write_text(f"import sys; sys.exit({code})")
    monkeypatch.setattr(compare, "train_command", lambda comparison, run: [sys.executable, str(script)])
    comparison = Comparison(**inputs(tmp_path), out=str(tmp_path / "out"), budget=1, variants=(Variant("a", {}),))
    with pytest.raises(RnnlmError) as caught:
        run_comparison(comparison, fake_measure)
    assert caught.value.exit_code == code and type(caught.value).__name__ == kind


READING_TRAINER = r"""
import json, os, sys
out, corpus, valid = sys.argv[1], sys.argv[2], sys.argv[3]
folder = os.path.dirname(out)
with open(os.path.join(folder, "seen"), "w") as f:
    json.dump([open(corpus).read(), open(valid).read()], f)
print(json.dumps({"best_valid_ppl": 20.0, "tokens_per_second": 500.0, "steps": 3, "seconds": 2.0}))
"""


def test_compare_reads_stdin_and_pipes_once_for_every_run(tmp_path, monkeypatch, fifo):
    """The corpus from stdin, the validation text and --config from read-once files: every
    run's training sees all of each, and the shared options arrive."""
    script = tmp_path / "reading_train.py"
    script.write_text(READING_TRAINER)
    monkeypatch.setattr(compare, "train_command",
                        lambda c, run: [sys.executable, str(script), run.model, c.corpus, c.valid])
    shared = []
    monkeypatch.setattr(compare, "measure_run",
                        lambda c, run, trained, device: shared.append(dict(c.shared)) or fake_measure(c, run, trained))
    valid_pipe, config_pipe = fifo(b"v1 v2\n", "valid"), fifo(b"hidden: 32\n", "config")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["compare", "-", "--valid", str(valid_pipe), "--config", str(config_pipe),
                                      "--budget", "1", "--vary", "cell=rnn,gru", "--out", str(out), "--json"],
                                input="w1 w2 w3\n" * 3, env={"RNNLM_DEBUG": None})
    assert result.exit_code == 0, result.stderr
    for variant in ("cell=rnn", "cell=gru"):
        assert json.loads((out / variant / "seen").read_text()) == ["w1 w2 w3\n" * 3, "v1 v2\n"]
    assert shared == [{"hidden": 32}, {"hidden": 32}]


def test_two_inputs_from_stdin_are_refused_up_front(tmp_path):
    result = CliRunner().invoke(app, ["compare", "-", "--valid", "-", "--budget", "1", "--vary", "cell=rnn",
                                      "--out", str(tmp_path / "out")], input="a\n", env={"RNNLM_DEBUG": None})
    assert result.exit_code == 2 and "standard input" in result.stderr
    assert not (tmp_path / "out").exists()
