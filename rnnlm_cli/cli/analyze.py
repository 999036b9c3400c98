"""rnnlm analyze: measurements of trained models (``analyze gradients``: how far back the gradient reaches)."""

from __future__ import annotations

import os
from functools import partial
from typing import Any, Optional

import typer

from rnnlm_cli.analysis.gradient_config import GradientConfig
from rnnlm_cli.cli.field_flags import FieldFlag, field_flags, given_options
from rnnlm_cli.cli.options import switch

NAME = "analyze"
SUMMARY = "Measure trained models: how far back their gradients reach."
HELP = "Measure trained models on your own text. 'rnnlm analyze gradients --help' for the gradient reach."

GRADIENTS_HELP = (
    "For positions t sampled from TEXT, the L2 norm of the gradient of the loss at t with respect to "
    "the recurrent state at t-k (h, and c for an LSTM), for k = 1..--max-distance: median and "
    "quartiles over the positions, per layer and for all layers together. The 'gradient reach' is the "
    "first k whose median norm is 1000 times below that at k = 1: vanishing gradients give a short "
    "reach. Give several models (trained on the same text: an RNN, a GRU, an LSTM) to compare them "
    "side by side and on one --plot. The text is streamed; only the sampled windows are kept."
)
GRADIENTS_EPILOG = (
    "Examples:\n\n"
    "  rnnlm analyze gradients runs/sample/model.pt sample_data/test.txt\n\n"
    "  rnnlm analyze gradients rnn.pt gru.pt lstm.pt test.txt --plot reach.png\n\n"
    "  rnnlm analyze gradients model.pt test.txt --max-distance 300 --json > reach.json"
)

EPILOG = "Examples:\n\n  rnnlm analyze gradients rnn.pt gru.pt lstm.pt test.txt --plot reach.png"

app = typer.Typer(name=NAME, help=HELP, epilog=EPILOG, no_args_is_help=True, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


_measure = partial(FieldFlag, GradientConfig)
"""A flag backed by a field of that class."""


@app.command("gradients", help=GRADIENTS_HELP, epilog=GRADIENTS_EPILOG,
             short_help="Gradient norm against distance, and the gradient reach.")
@field_flags("models", "text", *(_measure(name) for name in ("max_distance", "positions", "warmup", "batch", "seed")),
             "plot", "json_output", "device")
def gradients(
    models: list[str] = typer.Argument(..., metavar="MODEL...", help="One or more model files written by 'rnnlm train'."),
    text: str = typer.Argument(..., metavar="TEXT", help="The text to measure on (plain, .gz, or '-' for stdin)."),
    plot: Optional[str] = typer.Option(None, "--plot", metavar="FILE", help="Draw the norms against k (log scale) into this PNG."),
    json_output: bool = switch(False, "--json", help="Print one JSON object with every distance's figures."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    **measure: Any,
) -> None:
    from rnnlm_cli.analysis.gradients import gradient_profile
    from rnnlm_cli.cli.ui import Progress, print_json, print_text
    from rnnlm_cli.device import resolve_device
    from rnnlm_cli.files.roles import FileRole, check_file_roles
    from rnnlm_cli.files.spool import spooled
    from rnnlm_cli.store.checkpoint import load_model
    from rnnlm_cli.text.reading import check_readable, display_name

    config = GradientConfig(**given_options(measure))
    if plot is not None:
        from rnnlm_cli.train.plot import require_matplotlib

        require_matplotlib()
    check_readable(text)
    for model in models:
        check_readable(model)
    roles = [FileRole("TEXT", text)] + ([FileRole("--plot", plot, writes=True)] if plot else [])
    check_file_roles(roles + [FileRole(f"MODEL {i + 1}", m) for i, m in enumerate(models)],
                     may_share=[(f"MODEL {i + 1}", f"MODEL {j + 1}") for i in range(len(models))
                                for j in range(len(models))])
    target = resolve_device(device)
    labels = model_labels(models)
    measured = []
    with spooled(text) as readable:  # several models each read the text: a pipe is copied once
        for label, path in zip(labels, models):
            lm, tokenizer, _ = load_model(path, target)
            with Progress(f"gradients: {label}") as bar:
                profile = gradient_profile(lm, tokenizer, readable, target, config,
                                           progress=lambda done, total: bar.update(done, total))
            measured.append((label, path, lm.config, profile))
    if plot is not None:
        from rnnlm_cli.analysis.figures import plot_profiles

        plot_profiles([(f"{label} ({cfg.cell})", profile) for label, _, cfg, profile in measured], plot)
    if json_output:
        print_json({"models": [{"label": label, "model": display_name(path), "cell": cfg.cell, "layers": cfg.layers,
                                "hidden": cfg.hidden, **profile.to_dict()}
                               for label, path, cfg, profile in measured]})
        return
    for label, path, cfg, profile in measured:
        print_text(render_profile(label, cfg, profile))


def model_labels(paths: list[str]) -> list[str]:
    """Short names for the models: the file's stem, or its folder where stems repeat
    (``runs/rnn/model.pt`` and ``runs/gru/model.pt`` -> ``rnn``, ``gru``), or both."""
    stems = ["stdin" if p == "-" else os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    folders = [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in paths]
    if len(set(folders)) == len(folders):
        return folders
    return [os.path.join(folder, stem) for folder, stem in zip(folders, stems)]


def render_profile(label: str, cfg, profile) -> str:
    """The plain-text table of one model: median [quartiles] at 1, 2, 5, 10, ... and the reach."""
    from rnnlm_cli.analysis.gradients import fall_exponent, format_reach, table_distances

    columns = [f"layer {i + 1}" for i in range(len(profile.layers))] + (["all layers"] if len(profile.layers) > 1 else [])
    series = profile.layers + ([profile.whole] if len(profile.layers) > 1 else [])
    width = 30
    lines = [f"{label}: {cfg.cell}, {cfg.layers}x{cfg.hidden}; |d loss(t) / d state(t-k)|, median [quartiles] "
             f"over {profile.positions} positions",
             "     k  " + "".join(name.ljust(width) for name in columns).rstrip()]
    for k in table_distances(profile.max_distance):
        cells = [f"{s.median[k - 1]:.3e} [{s.q1[k - 1]:.2e}, {s.q3[k - 1]:.2e}]" for s in series]
        lines.append(f"{k:>6}  " + "".join(cell.ljust(width) for cell in cells).rstrip())
    reaches = ", ".join(f"{name} {format_reach(s.reach(), profile.max_distance)}" for name, s in zip(columns, series))
    lines.append(f"gradient reach (median falls by 10^{fall_exponent()}): {reaches}")
    return "\n".join(lines) + "\n"
