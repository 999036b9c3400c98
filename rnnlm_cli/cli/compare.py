"""rnnlm compare: train variants at one time budget and print them side by side."""

from __future__ import annotations

import contextlib
import os
from functools import partial
from typing import Any

import typer

from rnnlm_cli.analysis.compare import Comparison
from rnnlm_cli.analysis.compare_request import CompareRequest
from rnnlm_cli.cli.field_flags import FieldFlag, field_flags, field_help, given_options

NAME = "compare"
SUMMARY = "Train variants (cells, dropout, ...) at one time budget; a table and a picture."
HELP = (
    "Train each variant of CORPUS for --budget seconds of training, one after another (one per GPU when "
    "several are visible), then measure every model the same way: best validation perplexity, test "
    "perplexity (--test), parameters, training tokens/s, gradient reach on the validation text (see "
    "'rnnlm analyze gradients') and minimal-pair accuracy (--pairs). Variants come from --vary KEY=V1,V2 "
    "(repeat it for a grid) or a YAML file of named variants (--variants). --repeat N trains each with N "
    "seeds and reports mean ± std. Everything stays in --out: a folder per run with its model, and "
    "curves.png, the validation curves of all runs. Stopped midway, the same command continues where it "
    "stopped: finished runs are kept and a cut-short one resumes."
)
EPILOG = (
    "Examples:\n\n"
    "  rnnlm compare sample_data/train.txt --valid sample_data/valid.txt --budget 60 --vary cell=rnn,gru,lstm "
    "--preset sample-cpu --pairs sample_data/pairs.tsv\n\n"
    "  rnnlm compare train.txt --valid valid.txt --budget 120 --vary dropout=0,0.2,0.4 --repeat 3\n\n"
    "  rnnlm compare train.txt --valid valid.txt --test test.txt --budget 300 --variants variants.yaml --json"
)


_request = partial(FieldFlag, CompareRequest)
"""A flag backed by a field of that class."""


# Every option, in the order --help lists them, each a field of CompareRequest (its docstrings are the help).
ORDER = (
    "corpus", _request("valid", metavar="FILE"), _request("budget"),
    _request("vary", metavar="KEY=V1,V2,..."), _request("variants", metavar="FILE"), _request("test", metavar="FILE"),
    _request("pairs", metavar="FILE"), _request("preset"), _request("config", metavar="FILE"), _request("repeat"),
    _request("seed"), _request("out", metavar="DIR"), _request("json_output", decls=("--json",)), _request("device"),
)


@field_flags(*ORDER)
def command(
    corpus: str = typer.Argument(..., help=field_help(CompareRequest, "corpus") + "."),
    **options: Any,
) -> None:
    from rnnlm_cli.files.roles import FileRole, check_one_stdin
    from rnnlm_cli.files.spool import spooled
    from rnnlm_cli.text.reading import check_readable

    request = CompareRequest(corpus, **given_options(options))
    given = request.inputs()
    check_one_stdin([FileRole("CORPUS" if name == "corpus" else f"--{name}", path) for name, path in given.items()])
    for path in given.values():
        check_readable(path)
    with contextlib.ExitStack() as copies:
        # Every run's training and measuring reads these again, in child processes: a pipe,
        # stdin or <(...) gives its bytes once, so it is copied once, here.
        readable = {name: None for name in ("corpus", "valid", "test", "pairs", "variants", "config")}
        readable.update({name: copies.enter_context(spooled(path)) for name, path in given.items()})
        _compare(readable, budget=request.budget, vary=request.vary, preset=request.preset, repeat=request.repeat,
                 seed=request.seed, out=request.out, json_output=request.json_output, device=request.device,
                 config_name=request.config)


def _compare(inputs: dict, *, budget: float, vary, preset, repeat: int, seed: int, out: str, json_output: bool,
             device: str, config_name: str | None) -> None:
    from rnnlm_cli.analysis.compare import measure_run, run_comparison, summarize
    from rnnlm_cli.analysis.variants import check_option_names, grid, read_variant_file
    from rnnlm_cli.cli.ui import log, print_json, print_text
    from rnnlm_cli.config import load_yaml
    from rnnlm_cli.device import resolve_device

    corpus, valid, test, pairs, variants, config = (inputs[name] for name in
                                                    ("corpus", "valid", "test", "pairs", "variants", "config"))
    shared = load_yaml(config) if config else {}
    check_option_names(shared, config_name or "--config")
    if variants:
        base, chosen = read_variant_file(variants)
        shared = {**shared, **base}
    else:
        chosen = grid(list(vary))
    comparison = Comparison(corpus=corpus, valid=valid, out=out, budget=budget, variants=tuple(chosen),
                            shared=shared, preset=preset, repeat=repeat, seed=seed, test=test, pairs=pairs,
                            device=device)
    target = resolve_device(device)
    slots = _gpu_slots(device)
    log(f"rnnlm compare: {len(chosen)} variant(s) x {repeat} run(s), {budget:g} s of training each, into {out}"
        + (f", {len(slots)} at a time (one per GPU)" if len(slots) > 1 else ""))
    results = run_comparison(comparison, lambda c, run, trained: measure_run(c, run, trained, target),
                             say=log, slots=slots)
    summaries = summarize(results)
    picture = _draw(comparison, results)
    if json_output:
        print_json({"budget": budget, "runs": [vars(r) for r in results],
                    "summary": [{"variant": s.variant, "runs": s.runs,
                                 **{name: (None if v is None else {"mean": v[0], "std": v[1]})
                                    for name, v in s.figures.items()}} for s in summaries],
                    "curves": picture})
        return
    print_text(render_table(summaries, budget))
    if picture:
        log(f"validation curves: {picture}")


def _gpu_slots(device: str) -> list[dict[str, str]]:
    """One environment per visible CUDA GPU when ``device`` lets runs spread over them."""
    import torch

    if device not in ("auto", "cuda") or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return [{}]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    return [{"CUDA_VISIBLE_DEVICES": gpu.strip()} for gpu in ids]


def _draw(comparison: Comparison, results) -> str | None:
    """curves.png in the output folder; without matplotlib, a warning and no picture."""
    from rnnlm_cli.analysis.compare import valid_curve
    from rnnlm_cli.cli.ui import warn

    try:
        from rnnlm_cli.analysis.figures import draw_comparison, save_png

        figure = draw_comparison([(r.variant, *valid_curve(os.path.join(r.folder, "model.metrics.jsonl")))
                                  for r in results])
    except Exception as exc:  # noqa: BLE001 - only the missing extra is expected here
        from rnnlm_cli.errors import UsageError

        if not isinstance(exc, UsageError):
            raise
        warn(f"no curves.png: {exc}")
        return None
    path = os.path.join(comparison.out, "curves.png")
    save_png(figure, path)
    return path


def _figure(value, digits: int, thousands: bool = False) -> str:
    if value is None:
        return "-"
    mean, std = value
    text = f"{mean:,.{digits}f}" if thousands else f"{mean:.{digits}f}"
    return text if std == 0 else f"{text} ± {std:,.{digits}f}"


def render_table(summaries, budget: float) -> str:
    """The comparison as aligned plain text, one row per variant."""
    header = ("variant", "runs", "valid ppl", "test ppl", "params", "tokens/s", "reach", "pair acc.")
    rows = [header]
    for s in summaries:
        f = s.figures
        pair = None if f["pair_accuracy"] is None else (100 * f["pair_accuracy"][0], 100 * f["pair_accuracy"][1])
        rows.append((s.variant, str(s.runs), _figure(f["valid_ppl"], 2), _figure(f["test_ppl"], 2),
                     _figure(f["params"], 0, thousands=True), _figure(f["tokens_per_s"], 0, thousands=True),
                     "> 100" if f["reach"] is None else _figure(f["reach"], 1 if s.runs > 1 else 0), "-" if pair is None else _figure(pair, 1) + "%"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [f"{budget:g} s of training per run"]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    return "\n".join(lines) + "\n"
