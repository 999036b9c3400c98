"""Learning curves (rnnlm_cli/train/plot.py), `rnnlm train --plot` and the summary that ends a run's log."""

from __future__ import annotations

import json
import math
import random
import re
import struct
import sys

import pytest

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.errors import DataError, InputMissingError, UsageError
from rnnlm_cli.train.plot import curve_path, read_curves, require_matplotlib

from conftest import cli

TINY = ["--hidden", "8", "--emb", "8", "--layers", "1", "--batch-size", "4", "--bptt", "8", "--dropout", "0"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
try:
    import matplotlib  # noqa: F401

    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False


def write_metrics(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


RECORDS = [
    {"event": "train", "epoch": 1, "step": 2, "loss": 3.0, "ppl": 20.0, "lr": 0.01, "tokens_per_s": 9.0},
    {"event": "skipped", "epoch": 1, "step": 3, "loss": float("nan"), "grad_norm": 1.0, "in_a_row": 1},
    {"event": "train", "epoch": 1, "step": 4, "loss": 2.0, "ppl": 7.5, "lr": 0.005, "tokens_per_s": 9.0},
    {"event": "valid", "epoch": 1, "step": 4, "valid_loss": 2.1, "valid_ppl": 8.0, "best": True},
    {"event": "averaging", "epoch": 1, "step": 4},
    {"event": "train", "epoch": 2, "step": 6, "loss": 1.5, "ppl": 4.5, "lr": 0.0025, "tokens_per_s": 9.0},
    {"event": "valid", "epoch": 2, "step": 6, "valid_loss": 2.2, "valid_ppl": 9.0, "best": False},
]


# ---------------------------------------------------------------- reading the series


def test_read_curves_takes_train_and_valid_records_and_skips_the_rest(tmp_path):
    curves = read_curves(write_metrics(tmp_path / "m.metrics.jsonl", RECORDS))
    assert curves.train_ppl.steps == [2, 4, 6] and curves.train_ppl.values == [20.0, 7.5, 4.5]
    assert curves.lr.steps == [2, 4, 6] and curves.lr.values == [0.01, 0.005, 0.0025]
    assert curves.valid_ppl.steps == [4, 6] and curves.valid_ppl.values == [8.0, 9.0]
    assert curves.best_valid() == (4, 8.0)
    assert curves.last_lr() == (6, 0.0025)


def test_a_resumed_run_replaces_the_steps_it_trains_again(tmp_path):
    # Killed after logging step 6 but saved at step 4: the resumed run logs 6 and 8 again.
    resumed = RECORDS + [
        {"event": "train", "epoch": 2, "step": 6, "ppl": 5.0, "lr": 0.002},
        {"event": "valid", "epoch": 2, "step": 6, "valid_ppl": 7.0, "best": True},
        {"event": "train", "epoch": 2, "step": 8, "ppl": 4.0, "lr": 0.001},
    ]
    curves = read_curves(write_metrics(tmp_path / "m.metrics.jsonl", resumed))
    assert curves.train_ppl.steps == [2, 4, 6, 8] and curves.train_ppl.values == [20.0, 7.5, 5.0, 4.0]
    assert curves.valid_ppl.steps == [4, 6] and curves.valid_ppl.values == [8.0, 7.0]
    assert curves.best_valid() == (6, 7.0)


def test_non_finite_validations_are_never_the_best(tmp_path):
    records = [{"event": "valid", "step": 1, "valid_ppl": float("inf")},
               {"event": "valid", "step": 2, "valid_ppl": float("nan")},
               {"event": "valid", "step": 3, "valid_ppl": 50.0},
               {"event": "valid", "step": 4, "valid_ppl": 50.0}]
    curves = read_curves(write_metrics(tmp_path / "m.jsonl", records))
    assert curves.best_valid() == (3, 50.0)  # the first of equals, as training keeps it
    assert curves.last_lr() is None


def test_unreadable_metrics_are_typed_errors(tmp_path):
    with pytest.raises(InputMissingError):
        read_curves(tmp_path / "absent.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event": "train", "step": 1, "ppl": 2.0, "lr": 0.1}\n{"event": "tr\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2"):
        read_curves(bad)


def test_curve_path_sits_beside_the_model():
    assert curve_path("runs/x/model.pt") == "runs/x/model.curve.png"
    assert curve_path("best") == "best.curve.png"


# ---------------------------------------------------------------- drawing


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_the_figure_holds_exactly_the_logged_values(tmp_path):
    pytest.importorskip("matplotlib")
    from rnnlm_cli.train.plot import draw_curves

    figure = draw_curves(read_curves(write_metrics(tmp_path / "m.jsonl", RECORDS)))
    ppl_axes, lr_axes = figure.axes
    assert ppl_axes.get_yscale() == "log"
    train, valid = ppl_axes.get_lines()
    assert list(train.get_xdata()) == [2, 4, 6] and list(train.get_ydata()) == [20.0, 7.5, 4.5]
    assert list(valid.get_xdata()) == [4, 6] and list(valid.get_ydata()) == [8.0, 9.0]
    (lr,) = lr_axes.get_lines()
    assert list(lr.get_xdata()) == [2, 4, 6] and list(lr.get_ydata()) == [0.01, 0.005, 0.0025]


CLIPPED = [
    {"event": "train", "epoch": 1, "step": 2, "ppl": 20.0, "lr": 0.01, "grad_norm_p50": 3.0, "clipped_share": 1.0},
    {"event": "train", "epoch": 1, "step": 4, "ppl": 7.5, "lr": 0.01, "grad_norm_p50": 0.2, "clipped_share": 0.25},
    {"event": "valid", "epoch": 1, "step": 4, "valid_ppl": 8.0, "best": True},
    {"event": "train", "epoch": 1, "step": 6, "ppl": 4.5, "lr": 0.01, "grad_norm_p50": 0.1, "clipped_share": 0.0},
]
"""A run with --clip: each interval's share of steps clipped."""


def test_the_share_clipped_is_read_where_logged_and_empty_for_older_files(tmp_path):
    curves = read_curves(write_metrics(tmp_path / "m.jsonl", CLIPPED))
    assert curves.clipped.steps == [2, 4, 6] and curves.clipped.values == [1.0, 0.25, 0.0]
    assert curves.train_ppl.values == [20.0, 7.5, 4.5]
    assert read_curves(write_metrics(tmp_path / "old.jsonl", RECORDS)).clipped.steps == []
    # A run resumed by a newer rnnlm: only its records carry the share.
    mixed = read_curves(write_metrics(tmp_path / "mixed.jsonl", RECORDS[:3] + CLIPPED[2:]))
    assert mixed.clipped.steps == [6] and mixed.train_ppl.steps == [2, 4, 6]


def test_the_share_clipped_is_shaded_on_its_own_axis_over_the_rate(tmp_path):
    pytest.importorskip("matplotlib")
    from rnnlm_cli.train.plot import draw_curves

    figure = draw_curves(read_curves(write_metrics(tmp_path / "m.jsonl", CLIPPED)))
    ppl_axes, lr_axes, _grad_axes, clip_axes = figure.axes
    assert clip_axes.get_ylim() == (0, 100) and clip_axes.get_ylabel() == "% steps clipped"
    (shade,) = clip_axes.collections
    heights = {round(float(y), 9) for y in shade.get_paths()[0].vertices[:, 1]}
    assert heights == {0.0, 25.0, 100.0}
    assert [line.get_ydata().tolist() for line in lr_axes.get_lines()] == [[0.01, 0.01, 0.01]]
    assert len(ppl_axes.get_lines()) == 2
    assert len(draw_curves(read_curves(write_metrics(tmp_path / "old.jsonl", RECORDS))).axes) == 2
    png = tmp_path / "m.curve.png"
    from rnnlm_cli.train.plot import plot_metrics

    plot_metrics(tmp_path / "m.jsonl", png)
    assert png_size(png) == (800, 600)


def test_gradient_norms_get_their_own_log_panel_with_the_spikes(tmp_path):
    records = [{**record, "grad_norm_max": 40.0 * (i == 0) + 0.5} for i, record in enumerate(CLIPPED)
               if record["event"] == "train"]
    curves = read_curves(write_metrics(tmp_path / "m.jsonl", records))
    assert curves.grad_median.values == [3.0, 0.2, 0.1] and curves.grad_max.values == [40.5, 0.5, 0.5]
    assert read_curves(write_metrics(tmp_path / "old.jsonl", RECORDS)).grad_max.steps == []
    pytest.importorskip("matplotlib")
    from rnnlm_cli.train.plot import draw_curves

    grad_axes = draw_curves(curves).axes[2]
    assert grad_axes.get_yscale() == "log" and grad_axes.get_ylabel() == "gradient norm"
    median, largest = (line.get_ydata().tolist() for line in grad_axes.get_lines())
    assert median == [3.0, 0.2, 0.1] and largest == [40.5, 0.5, 0.5]


def test_plot_metrics_writes_a_png_and_leaves_no_temporary_file(tmp_path):
    pytest.importorskip("matplotlib")
    from rnnlm_cli.train.plot import plot_metrics

    png = tmp_path / "out" / "m.curve.png"
    curves = plot_metrics(write_metrics(tmp_path / "m.jsonl", RECORDS), png)
    assert png_size(png) == (800, 600)  # figsize (8, 6) at 100 dpi
    assert png.stat().st_size > 5000
    assert sorted(p.name for p in png.parent.iterdir()) == ["m.curve.png"]
    assert curves.best_valid() == (4, 8.0)


def test_without_matplotlib_plotting_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'rnnlm\[plot\]'"):
        require_matplotlib()


# ---------------------------------------------------------------- the command line


run = cli


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(3)
    words = "the a dog cat sees runs big small .".split()
    root = tmp_path_factory.mktemp("plot")
    train, valid = root / "train.txt", root / "valid.txt"
    train.write_text("".join(" ".join(rng.choices(words, k=6)) + "\n" for _ in range(20)), encoding="utf-8")
    valid.write_text("".join(" ".join(rng.choices(words, k=6)) + "\n" for _ in range(4)), encoding="utf-8")
    return train, valid


def summary_table(stderr: str) -> dict[str, str]:
    lines = stderr.splitlines()
    start = lines.index("training summary")
    rows = {}
    for line in lines[start + 1:]:
        name, _, value = line.strip().partition("  ")
        rows[name] = value.strip()
    return rows


@pytest.fixture(scope="module")
def plotted_run(corpus, tmp_path_factory):
    """Epochs of a few steps, stopped by --max-steps 7: validations at each epoch's end and at step 7.

    With --plot where matplotlib is installed; the summary is checked either way."""
    train, valid = corpus
    out = tmp_path_factory.mktemp("run") / "m.pt"
    plot = ["--plot"] if HAVE_MATPLOTLIB else []
    result = run("train", train, "--valid", valid, "--out", out, *TINY, "--epochs", "5", "--max-steps", "7",
                 "--log-interval", "2", "--lr", "0.05", *plot, "--json")
    assert result.exit_code == 0, result.stderr
    return out, result


def test_plot_writes_the_curves_beside_the_model(plotted_run):
    pytest.importorskip("matplotlib")
    out, _ = plotted_run
    png = out.with_name("m.curve.png")
    assert png_size(png) == (800, 600) and png.stat().st_size > 5000
    records = [json.loads(line) for line in out.with_name("m.metrics.jsonl").read_text().splitlines()]
    curves = read_curves(out.with_name("m.metrics.jsonl"))
    assert curves.valid_ppl.steps == [r["step"] for r in records if r["event"] == "valid"]
    assert len(curves.valid_ppl.steps) >= 2 and curves.valid_ppl.steps[-1] == 7
    assert curves.train_ppl.values == [r["ppl"] for r in records if r["event"] == "train"]


def test_summary_on_stderr_agrees_with_the_json_result(plotted_run):
    out, result = plotted_run
    assert len(result.stdout.splitlines()) == 1
    summary = json.loads(result.stdout)
    assert "training summary" not in result.stdout
    assert "\x1b" not in result.stderr
    rows = summary_table(result.stderr)
    records = [json.loads(line) for line in out.with_name("m.metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["event"] == "valid"]
    best = min(valid, key=lambda r: r["valid_ppl"])
    last_train = [r for r in records if r["event"] == "train"][-1]
    assert rows["stopped by"] == summary["stop_reason"] == "max_steps"
    assert rows["steps"] == str(summary["steps"]) == "7"
    steps_per_epoch = int(re.search(r"(\d+) steps per epoch", result.stderr).group(1))
    assert rows["epochs"] == f"{summary['epochs']:.2f}" == f"{7 / steps_per_epoch:.2f}"
    assert rows["train tokens"] == f"{summary['train_tokens']:,}"
    assert rows["tokens/s"] == f"{summary['tokens_per_second']:,.0f}"
    assert rows["train time"] == f"{summary['seconds']:.1f} s"
    assert math.isclose(best["valid_ppl"], summary["best_valid_ppl"])
    assert rows["best valid ppl"] == f"{summary['best_valid_ppl']:.2f} at step {best['step']}"
    assert rows["skipped steps"] == str(summary["skipped_steps"]) == "0"
    # The default --clip over all 7 steps, and the verdict on it after the table.
    assert summary["clip_steps"] == 7 and summary["clipped_share"] == summary["clipped_steps"] / 7
    assert rows["clipped steps"].endswith(f"({summary['clipped_steps']} of 7)")
    assert summary["clip_diagnosis"].startswith(f"--clip {TrainConfig().clip:g} ")
    assert result.stderr.splitlines()[-1] == summary["clip_diagnosis"]
    assert last_train["step"] == 6
    assert rows["last lr"] == f"{last_train['lr']:.4g} (step 6)"
    assert rows["model file"] == summary["paths"]["model"] == str(out)
    assert rows["last file"] == summary["paths"]["last"]
    assert rows["metrics file"] == summary["paths"]["metrics"]
    assert rows.get("curve file") == (str(out.with_name("m.curve.png")) if HAVE_MATPLOTLIB else None)


def test_plain_result_line_is_unchanged_and_no_curve_without_plot(corpus, tmp_path):
    train, valid = corpus
    out = tmp_path / "m.pt"
    result = run("train", train, "--valid", valid, "--out", out, *TINY, "--max-time", "0.001")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("best valid ppl ") and len(result.stdout.splitlines()) == 1
    rows = summary_table(result.stderr)
    assert rows["stopped by"] == "max_time" and "curve file" not in rows
    assert not out.with_name("m.curve.png").exists()


def test_plot_also_after_a_time_limited_run(corpus, tmp_path):
    pytest.importorskip("matplotlib")
    train, valid = corpus
    out = tmp_path / "m.pt"
    result = run("train", train, "--valid", valid, "--out", out, *TINY, "--max-time", "0.001", "--plot", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["stop_reason"] == "max_time"
    assert out.with_name("m.curve.png").read_bytes()[:8] == PNG_MAGIC


def test_plot_without_matplotlib_is_refused_before_training(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    train, valid = corpus
    out = tmp_path / "run" / "m.pt"
    result = run("train", train, "--valid", valid, "--out", out, *TINY, "--plot")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "rnnlm: error: plotting learning curves needs the plot extra: pip install 'rnnlm[plot]'"]
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- the table itself


def test_table_is_plain_aligned_text_off_a_terminal(capsys):
    from rnnlm_cli.cli.ui import print_table

    print_table("title", [("a", "1"), ("longer name", "[x] 2")])
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["title", "  a            1", "  longer name  [x] 2"]


def test_table_is_a_rich_table_on_a_terminal_unless_no_color(capsys, monkeypatch):
    from rnnlm_cli.cli import ui as _ui

    monkeypatch.setattr(_ui, "stderr_is_terminal", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    _ui.print_table("title", [("name", "[bold]x[/bold]")])
    framed = capsys.readouterr().err
    assert "│" in framed and "[bold]x[/bold]" in framed  # boxed, and values are not markup
    monkeypatch.setenv("NO_COLOR", "1")
    _ui.print_table("title", [("name", "x")])
    plain = capsys.readouterr().err
    assert plain == "title\n  name  x\n"
