"""The pictures of the analyses: gradient norms against distance (one line per model, its
quartiles shaded), and the validation curves of a comparison's runs against training time.

Drawn like the learning curves (:mod:`rnnlm_cli.train.plot`): a bare matplotlib Figure on
an Agg canvas (the ``plot`` extra), written atomically.
"""

from __future__ import annotations

import math
import os

from rnnlm_cli.analysis.gradients import REACH_FALL, GradientProfile, fall_exponent
from rnnlm_cli.files.atomic import atomic_open
from rnnlm_cli.train.plot import require_matplotlib


def _positive(values: list[float]) -> list[float]:
    # A log axis cannot show 0: a gradient that underflowed leaves a gap, not a false value.
    return [v if math.isfinite(v) and v > 0 else math.nan for v in values]


def draw_profiles(profiles: list[tuple[str, GradientProfile]], title: str = ""):
    """A matplotlib Figure: the whole state's median norm against k (log y), one line per (label, profile)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for label, profile in profiles:
        distances = list(range(1, profile.max_distance + 1))
        whole = profile.whole
        reach = profile.reach
        reach_text = f"> {profile.max_distance}" if reach is None else str(reach)
        line, = axes.plot(distances, _positive(whole.median), label=f"{label} (reach {reach_text})")
        axes.fill_between(distances, _positive(whole.q1), _positive(whole.q3), color=line.get_color(), alpha=0.2)
        if whole.median and whole.median[0] > 0:
            # The reach threshold of this model: where its line crosses it is its reach.
            axes.axhline(whole.median[0] / REACH_FALL, color=line.get_color(), linestyle=":", linewidth=0.8)
    axes.set_yscale("log")
    axes.set_xlabel("distance k (steps back)")
    axes.set_ylabel("|d loss(t) / d state(t-k)|")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    axes.set_title(title or f"gradient reach: median and quartiles; dotted: 10^-{fall_exponent()} of distance 1")
    return figure


def plot_profiles(profiles: list[tuple[str, GradientProfile]], png_path: str | os.PathLike) -> None:
    """Draw :func:`draw_profiles` into ``png_path``, atomically."""
    save_png(draw_profiles(profiles), png_path)


def draw_comparison(curves: list[tuple[str, list[float], list[float]]], title: str = ""):
    """A matplotlib Figure: validation perplexity (log y) against training seconds, one line
    per (label, seconds, perplexities); the runs of one variant share a colour."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    colours: dict[str, str] = {}
    for label, seconds, ppls in curves:
        colour = colours.get(label)
        line, = axes.plot(seconds, _positive(ppls), marker="o", markersize=3, color=colour,
                          label=None if colour else label)
        colours.setdefault(label, line.get_color())
    if any(math.isfinite(v) for _, _, ppls in curves for v in _positive(ppls)):
        from matplotlib.ticker import FuncFormatter

        axes.set_yscale("log")
        # Plain numbers (14.2, not 1.42 x 10^1): perplexities are read off, not estimated.
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        axes.yaxis.set_major_formatter(plain)
        axes.yaxis.set_minor_formatter(plain)
    axes.set_xlabel("training seconds")
    axes.set_ylabel("validation perplexity")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    axes.set_title(title or "validation perplexity at an equal time budget")
    return figure


def save_png(figure, png_path: str | os.PathLike) -> None:
    """Write ``figure`` into ``png_path``, atomically."""
    with atomic_open(png_path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
