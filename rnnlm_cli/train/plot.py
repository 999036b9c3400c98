"""Learning curves: the series of a run's ``metrics.jsonl``, and a PNG of them.

Reading the series needs nothing beyond the standard library; drawing needs matplotlib
(the ``plot`` extra), imported only when a figure is made and drawn on an Agg canvas,
so it works on machines without a display and never opens a window.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from rnnlm_cli.files.atomic import atomic_open
from rnnlm_cli.errors import DataError, InputMissingError, UsageError

_MISSING = "needs the plot extra: pip install 'rnnlm[plot]'"


@dataclass
class Series:
    """One curve: values against training steps, in step order."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, step: int, value: float) -> None:
        # A resumed run appends to the file of the run it continues, which may have logged
        # past the saved state before it was killed: the later records replace those steps.
        while self.steps and self.steps[-1] >= step:
            self.steps.pop()
            self.values.pop()
        self.steps.append(step)
        self.values.append(value)


@dataclass
class Curves:
    """The series a run logs: training and validation perplexity, the learning rate, and with
    --clip the share of each interval's steps it clipped (empty for files from before it was logged)."""

    train_ppl: Series = field(default_factory=Series)
    valid_ppl: Series = field(default_factory=Series)
    lr: Series = field(default_factory=Series)
    clipped: Series = field(default_factory=Series)
    grad_median: Series = field(default_factory=Series)
    """Each interval's median gradient norm before clipping (empty for files from before it was logged)."""
    grad_max: Series = field(default_factory=Series)
    """Each interval's largest gradient norm before clipping: the spikes --clip cuts."""
    overfitting: int | None = None
    """The step from which the run memorised its corpus (training improving, validation not); None: not seen."""

    def best_valid(self) -> tuple[int, float] | None:
        """(step, perplexity) of the best finite validation; the first of equals, as training keeps it."""
        scored = [(ppl, i) for i, ppl in enumerate(self.valid_ppl.values) if math.isfinite(ppl)]
        if not scored:
            return None
        ppl, i = min(scored)
        return self.valid_ppl.steps[i], ppl

    def last_lr(self) -> tuple[int, float] | None:
        """(step, rate) of the last logged learning rate."""
        return (self.lr.steps[-1], self.lr.values[-1]) if self.lr.steps else None


def _number(value: Any) -> float:
    # metrics.jsonl is written by json.dumps, which spells non-finite floats Infinity/NaN.
    return float(value) if value is not None else math.nan


def read_curves(metrics_path: str | os.PathLike) -> Curves:
    """The curves of a ``metrics.jsonl`` file ("train" and "valid" records; others are skipped)."""
    curves = Curves()
    try:
        handle = open(metrics_path, encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputMissingError(f"{metrics_path}: no such metrics file") from exc
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                event, step = record["event"], int(record["step"])
                if event == "train":
                    curves.train_ppl.add(step, _number(record["ppl"]))
                    curves.lr.add(step, _number(record["lr"]))
                    if "clipped_share" in record:
                        curves.clipped.add(step, _number(record["clipped_share"]))
                    if "grad_norm_p50" in record:
                        curves.grad_median.add(step, _number(record["grad_norm_p50"]))
                    if "grad_norm_max" in record:
                        curves.grad_max.add(step, _number(record["grad_norm_max"]))
                elif event == "valid":
                    curves.valid_ppl.add(step, _number(record["valid_ppl"]))
                elif event == "overfitting":
                    curves.overfitting = step
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{metrics_path}:{number}: not a metrics record ({exc})") from exc
    return curves


def require_matplotlib() -> None:
    """Raise UsageError unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"plotting learning curves {_MISSING}") from exc


def _finite(values: list[float]) -> list[float]:
    # Log axes cannot show 0, inf or NaN; a gap in the line says the value was not finite.
    return [v if math.isfinite(v) and v > 0 else math.nan for v in values]


def draw_curves(curves: Curves, title: str = ""):
    """A matplotlib Figure: perplexity (log scale, train and valid, and a line where overfitting
    began) above the learning rate and, when logged, the share of steps clipped, shaded on the
    rate's panel against its own axis; below them, when logged, the gradient norm before
    clipping (each interval's median and largest, log scale), where explosions show as spikes."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter

    # A bare Figure on an Agg canvas, not pyplot: no display needed, and neither the
    # process-wide backend nor pyplot's list of open figures is touched.
    figure = Figure(figsize=(8, 6), layout="constrained")
    FigureCanvasAgg(figure)
    if curves.grad_median.steps:
        ppl_axes, lr_axes, grad_axes = figure.subplots(3, 1, sharex=True, height_ratios=(3, 1, 1))
    else:
        (ppl_axes, lr_axes), grad_axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1)), None
    ppl_axes.plot(curves.train_ppl.steps, _finite(curves.train_ppl.values), label="train", color="tab:blue")
    ppl_axes.plot(curves.valid_ppl.steps, _finite(curves.valid_ppl.values), label="valid", color="tab:orange",
                  marker="o", markersize=3)
    if any(math.isfinite(v) for v in _finite(curves.train_ppl.values + curves.valid_ppl.values)):
        ppl_axes.set_yscale("log")
        # Plain numbers (60, not 6 x 10^1): perplexities are read off, not estimated.
        ppl_axes.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ppl_axes.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ppl_axes.set_ylabel("perplexity")
    ppl_axes.grid(True, which="both", alpha=0.3)
    if curves.overfitting is not None:
        # Where the gap between the two curves began to grow: the steps after it memorised.
        ppl_axes.axvline(curves.overfitting, color="tab:red", linestyle="--", linewidth=1,
                         label="overfitting from here")
    ppl_axes.legend()
    if title:
        ppl_axes.set_title(title)
    lr_axes.plot(curves.lr.steps, curves.lr.values, color="tab:green")
    lr_axes.set_ylabel("learning rate")
    lr_axes.grid(True, alpha=0.3)
    if grad_axes is not None:
        _draw_grad_norms(grad_axes, curves)
    (grad_axes or lr_axes).set_xlabel("step")
    if curves.clipped.steps:
        _shade_clipped(lr_axes, curves.clipped)
    return figure


def _draw_grad_norms(axes, curves: Curves) -> None:
    """Median and largest gradient norm of each interval, before clipping: a tanh RNN without
    --clip shows its explosions here as spikes orders of magnitude above the median."""
    axes.plot(curves.grad_median.steps, _finite(curves.grad_median.values), color="tab:blue", label="median")
    if curves.grad_max.steps:
        axes.plot(curves.grad_max.steps, _finite(curves.grad_max.values), color="tab:red", linewidth=0.8,
                  label="largest")
    if any(math.isfinite(v) for v in _finite(curves.grad_median.values + curves.grad_max.values)):
        axes.set_yscale("log")
    axes.set_ylabel("gradient norm")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper right", fontsize="small")


def _shade_clipped(lr_axes, clipped: Series) -> None:
    """The percentage of steps clipped, shaded on a second axis over the rate's panel: where
    it rises, --clip set the step size rather than the gradient."""
    axes = lr_axes.twinx()
    # A record covers the steps since the one before it: each value holds up to its step.
    axes.fill_between(clipped.steps, [100 * v for v in clipped.values], step="pre", color="tab:red", alpha=0.25,
                      linewidth=0, label="clipped")
    axes.set_ylim(0, 100)
    axes.set_ylabel("% steps clipped", color="tab:red")
    axes.tick_params(axis="y", colors="tab:red")
    # The rate's line stays in front of the shading: its panel on top, its background clear.
    lr_axes.set_zorder(axes.get_zorder() + 1)
    lr_axes.patch.set_visible(False)


def plot_metrics(metrics_path: str | os.PathLike, png_path: str | os.PathLike) -> Curves:
    """Draw the learning curves of ``metrics_path`` into ``png_path`` (written atomically); the curves drawn."""
    require_matplotlib()
    curves = read_curves(metrics_path)
    figure = draw_curves(curves, title=os.path.basename(os.fspath(metrics_path)))
    # Drawn through the temp file's own descriptor: a link at png_path is replaced, never followed.
    with atomic_open(png_path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    return curves


def curve_path(model_path: str) -> str:
    """Where ``--plot`` puts the curves of a run whose model is ``model_path``: ``<stem>.curve.png``."""
    stem, _ = os.path.splitext(model_path)
    return f"{stem}.curve.png"
