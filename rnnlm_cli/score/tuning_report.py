"""What ``rnnlm eval --tune`` prints: the WER table, its JSON, and the WER plot.

The table::

    dev.nbest: 300 utterances, 3,000 hypotheses, 2,712 reference words
                                WER  errors
    acoustic scores alone    20.06%     544
    oracle (best of lists)    2.21%      60
    forward model            12.13%     329  --lm-weight 0.6 --word-penalty 0.4
    forward + backward       10.95%     297  --lm-weight 0.5 --word-penalty 0.3 --backward-weight 0.4
    WER around the best (rows --lm-weight, columns --word-penalty):
              0.2     0.3     0.4
       0.4  11.5%   11.3%   11.6%
     * 0.5  11.1%  *10.95%  11.4%
       0.6  ...

Every WER is the chosen hypotheses' word errors (jiwer's alignment, counted once per
hypothesis, :mod:`rnnlm_cli.score.wer`) over the reference words.
"""

from __future__ import annotations

import os
from typing import Any

from rnnlm_cli.files.atomic import atomic_open
from rnnlm_cli.errors import UsageError

AROUND = 2
"""Grid rows and columns shown on each side of the best point."""


def tuning_lines(result, name: str) -> list[str]:
    """The table of ``result`` (:class:`rnnlm_cli.score.tuning.TuningResult`) for the lists named ``name``."""
    lists = result.lists
    tuned = _tuned(result)
    width = max(len(label) for label, _ in [("oracle (best of lists)", None), *tuned]) + 4
    lines = [f"{name}: {len(lists.utterances):,} utterances, {lists.hypotheses:,} hypotheses, "
             f"{lists.reference_words:,} reference words", f"{'':{width}}{'WER':>8}{'errors':>8}"]

    def row(label: str, errors: int, wer: float, flags: str = "") -> None:
        lines.append(f"{label:{width}}{wer:8.2%}{errors:8,}" + (f"  {flags}" if flags else ""))

    row("acoustic scores alone", result.acoustic_errors, result.wer(result.acoustic_errors))
    row("oracle (best of lists)", result.oracle_errors, result.wer(result.oracle_errors))
    for label, choice in tuned:
        row(label, choice.errors, result.wer(choice.errors), choice.flags())
    return lines + _around_lines(result)


def _tuned(result) -> list[tuple[str, Any]]:
    """The tuned rows: the forward model alone (when a backward model was searched too), then the best."""
    best = result.best
    # --lambda 1 leaves the n-gram model no weight.
    label = "forward model" + (" + n-gram" if best.mix_weight is not None and best.mix_weight < 1 else "")
    if not best.backward_weight:  # no backward model, or one that lowered no WER
        return [(label, best)]
    rows = [(label, result.forward_best)] if result.forward_best is not None else []
    return rows + [(label + " + backward", best)]


def _around_lines(result) -> list[str]:
    surface, best = result.surface, result.best
    m, b, w, p = surface.index(best)
    axes = surface.axes
    rows = range(max(0, w - AROUND), min(len(axes.lm_weights), w + AROUND + 1))
    columns = range(max(0, p - AROUND), min(len(axes.word_penalties), p + AROUND + 1))
    held = [f"{name} {value:g}" for name, value in (("--lambda", best.mix_weight),
                                                    ("--backward-weight", best.backward_weight)) if value is not None]
    lines = ["WER around the best (rows --lm-weight, columns --word-penalty" + "".join(f"; {h}" for h in held) + "):",
             (" " * 10 + "".join(f"{axes.word_penalties[c]:>8g} " for c in columns)).rstrip()]
    for r in rows:
        cells = "".join(f"{result.wer(int(surface.errors[m, b, r, c])):8.2%}" + ("*" if (r, c) == (w, p) else " ")
                        for c in columns)
        lines.append((("* " if r == w else "  ") + f"{axes.lm_weights[r]:>8g}" + cells).rstrip())
    return lines


def tuning_dict(result, name: str) -> dict[str, Any]:
    """The table as one JSON object, with both grids whole (every mixture and backward weight)."""
    lists, surface = result.lists, result.surface

    def point(choice) -> dict[str, Any]:
        return {"lm_weight": choice.lm_weight, "word_penalty": choice.word_penalty, "mix_weight": choice.mix_weight,
                "backward_weight": choice.backward_weight, "errors": choice.errors,
                "wer": result.wer(choice.errors), "flags": choice.flags()}

    return {
        "nbest": name, "utterances": len(lists.utterances), "hypotheses": lists.hypotheses,
        "reference_words": lists.reference_words,
        "acoustic": {"errors": result.acoustic_errors, "wer": result.wer(result.acoustic_errors)},
        "oracle": {"errors": result.oracle_errors, "wer": result.wer(result.oracle_errors)},
        "best": point(result.best),
        "forward_best": None if result.forward_best is None else point(result.forward_best),
        "grid": _grid(result.coarse or surface),
        "refined": None if result.coarse is None or result.coarse is surface else _grid(surface),
        "notes": list(result.notes),
    }


def _grid(surface) -> dict[str, Any]:
    """A grid's axes and its errors, indexed [mixture][backward][LM weight][penalty]."""
    axes = surface.axes
    return {"lm_weights": list(axes.lm_weights), "word_penalties": list(axes.word_penalties),
            "mix_weights": list(axes.mix_weights), "backward_weights": list(axes.backward_weights),
            "errors": surface.errors.tolist()}


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise UsageError("--plot needs the plot extra: pip install 'rnnlm[plot]'") from exc


def plot_tuning(result, path: str | os.PathLike, title: str) -> None:
    """WER over the LM weight and word penalty grid (the first, wider one, at the best mixture and
    backward weights), the best point marked; a line where one of the two is held; with a searched
    backward weight, a second panel of the best WER at each."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    surface, best = result.coarse or result.surface, result.best
    axes = surface.axes
    m, b = axes.mix_weights.index(best.mix_weight), axes.backward_weights.index(best.backward_weight)
    shares = len(axes.backward_weights) > 1
    # A bare Figure on an Agg canvas: no display, and pyplot's global state untouched.
    figure = Figure(figsize=(11 if shares else 7, 5), layout="constrained")
    FigureCanvasAgg(figure)
    grid_axes, *rest = figure.subplots(1, 2, width_ratios=(3, 2)) if shares else [figure.subplots()]
    _draw_grid(figure, grid_axes, axes, 100.0 * surface.errors[m, b] / result.lists.reference_words, best,
               100.0 * result.wer(best.errors))
    grid_axes.set_title(title)
    if rest:
        per_share = 100.0 * surface.errors[m].min(axis=(1, 2)) / result.lists.reference_words
        rest[0].plot(axes.backward_weights, per_share, marker="o")
        rest[0].axhline(100.0 * result.wer(result.acoustic_errors), color="tab:gray", linestyle="--",
                        label="acoustic scores alone")
        rest[0].set_xlabel("--backward-weight")
        rest[0].set_ylabel("best WER (%)")
        rest[0].grid(True, alpha=0.3)
        rest[0].legend()
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)


def _draw_grid(figure, panel, axes, wer, best, best_wer: float) -> None:
    """``wer`` (LM weights, penalties) as a map, or as a line over the one axis searched."""
    label = f"best: {best_wer:.2f}%"
    if len(axes.lm_weights) > 1 and len(axes.word_penalties) > 1:
        image = panel.pcolormesh(axes.word_penalties, axes.lm_weights, wer, shading="nearest", cmap="viridis_r")
        figure.colorbar(image, ax=panel, label="WER (%)")
        panel.plot([best.word_penalty], [best.lm_weight], marker="*", color="red", markersize=14, label=label)
        panel.set_xlabel("--word-penalty")
        panel.set_ylabel("--lm-weight")
    else:
        along_weights = len(axes.lm_weights) > 1
        values = axes.lm_weights if along_weights else axes.word_penalties
        panel.plot(values, wer.ravel(), marker="o")
        panel.plot([best.lm_weight if along_weights else best.word_penalty], [best_wer], marker="*", color="red",
                   markersize=14, label=label)
        panel.set_xlabel("--lm-weight" if along_weights else "--word-penalty")
        panel.set_ylabel("WER (%)")
        panel.grid(True, alpha=0.3)
    panel.legend(loc="upper right")
