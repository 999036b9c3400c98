"""rnnlm eval: perplexity of a text under a model, in SRILM's format."""

from __future__ import annotations

import sys

import typer

from rnnlm_cli.commands._ui import Progress, fmt, print_json, warn

NAME = "eval"
SUMMARY = "Score text: perplexity in SRILM's format, JSON, or per-sentence scores."
HELP = (
    "Score FILE (text, .gz text, or '-' for stdin) with MODEL. Prints SRILM's two lines "
    "(log10 logprob, ppl over words + sentences, ppl1 over words; OOV words excluded), "
    "or one JSON object with --json, or one log10 score per input line with --per-sentence. "
    "By default the hidden state carries across lines (continuous-stream perplexity)."
)
EPILOG = (
    "Examples:\n\n"
    "  rnnlm eval runs/sample/model.pt sample_data/test.txt\n\n"
    "  cat test.txt | rnnlm eval model.pt - --json\n\n"
    "  rnnlm eval model.pt hyps.txt --context sentence --per-sentence > scores.txt"
)


def command(
    model: str = typer.Argument(..., help="Model file written by 'rnnlm train'."),
    file: str = typer.Argument(..., help="Text to score (plain or .gz), or '-' for stdin."),
    context: str = typer.Option("stream", help="stream: state carries across lines; sentence: each line alone."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object of the totals."),
    per_sentence: bool = typer.Option(False, "--per-sentence", help="Print one log10 score per input line, in order."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    strict: bool = typer.Option(False, "--strict", help="Refuse invalid UTF-8 instead of replacing it."),
) -> None:
    from rnnlm_cli.checkpoint import load_model
    from rnnlm_cli.corpus import input_warnings
    from rnnlm_cli.device import resolve_device
    from rnnlm_cli.errors import UsageError
    from rnnlm_cli.evaluate import CONTEXTS, evaluate_file
    from rnnlm_cli.textio import check_readable

    if context not in CONTEXTS:
        raise UsageError(f"--context must be one of {', '.join(CONTEXTS)}, got {context!r}")
    if json_output and per_sentence:
        raise UsageError("--json and --per-sentence cannot be combined")
    check_readable(file)
    target = resolve_device(device)
    lm, tokenizer, _ = load_model(model, target)
    with Progress("scoring") as progress:

        def on_sentence(count: int, score: float) -> None:
            progress.update(count)
            if per_sentence:
                sys.stdout.write(f"{score:.6f}\n")

        result = evaluate_file(lm, tokenizer, file, target, context=context, strict=strict,
                               on_sentence=on_sentence)
    for note in input_warnings(result.file, invalid_lines=result.invalid_lines, control_chars=result.control_chars,
                               literal_specials=result.literal_specials):
        warn(note)
    if per_sentence:
        sys.stdout.flush()
    elif json_output:
        print_json(result.to_dict())
    else:
        print(f"file {result.file}: {result.sentences} sentences, {result.words} words, {result.oovs} OOVs")
        print(f"{result.zeroprobs} zeroprobs, logprob= {fmt(result.logprob)} ppl= {fmt(result.ppl)} ppl1= {fmt(result.ppl1)}")
