"""rnnlm generate: sample text from a model, streamed as it is produced."""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

import typer

from rnnlm_cli.cli.field_flags import FieldFlag, field_flags, given_options
from rnnlm_cli.cli.ui import warn
from rnnlm_cli.config import SamplingConfig

NAME = "generate"
SUMMARY = "Sample text from a model, streamed as it is drawn."
HELP = (
    "Sample text from MODEL, continuing --prompt. Tokens are printed as they are drawn; "
    "several samples (--num-samples) are drawn together as one batch and printed one after another, "
    "separated by a blank line (one per line with --stop-at-eos). A backward model (trained with "
    "--reverse) writes right to left: --prompt is the END of the first line and the sample is the "
    "text before it, printed in reading order once drawn."
)
EPILOG = (
    "Examples:\n\n"
    "  rnnlm generate runs/sample/model.pt --prompt \"the dogs\" --max-tokens 50 --seed 1\n\n"
    "  echo \"once upon a\" | rnnlm generate model.pt --prompt - --top-p 0.9 --temperature 0.8\n\n"
    "  rnnlm generate model.pt --num-samples 5 --stop-at-eos --top-k 40"
)


_sampling = partial(FieldFlag, SamplingConfig)
"""A flag backed by a field of that class."""


# Every option, in the order --help lists them: the sampling options are SamplingConfig's fields.
ORDER = (
    "model", "prompt",
    _sampling("max_tokens"), _sampling("temperature"), _sampling("top_k"), _sampling("top_p"),
    _sampling("seed", shown_default="random"), _sampling("num_samples"), _sampling("stop_at_eos"),
    "device",
)


@field_flags(*ORDER)
def command(
    model: str = typer.Argument(..., help="Model file written by 'rnnlm train'."),
    prompt: str = typer.Option("", help="Text to continue; '-' reads it from stdin."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    **sampling: Any,
) -> None:
    from rnnlm_cli.store.checkpoint import load_model
    from rnnlm_cli.device import resolve_device
    from rnnlm_cli.files.roles import FileRole, check_stdout_apart
    from rnnlm_cli.models.generate import sample_text

    config = SamplingConfig(**given_options(sampling))
    if prompt == "-":
        prompt = sys.stdin.read().rstrip("\r\n")
    check_stdout_apart([FileRole("MODEL", model)])
    target = resolve_device(device)
    lm, tokenizer, _ = load_model(model, target)
    ids = tokenizer.encode(prompt)
    _report_unknown(prompt, ids[::-1] if tokenizer.reverse else ids, tokenizer)  # in the prompt's word order
    for chunk in sample_text(lm, tokenizer, prompt, config, target):
        sys.stdout.write(chunk)
        sys.stdout.flush()  # each token as it is drawn


def _report_unknown(prompt: str, ids: list[int], tokenizer) -> None:
    """Say on stderr which of the prompt's words the model does not know: it continues from
    ``<unk>`` in their place, which a user reading only the output would not guess."""
    unknown = [i for i, token in enumerate(ids) if tokenizer.unk_id is not None and token == tokenizer.unk_id]
    if not unknown:
        return
    words = prompt.split()
    if tokenizer.kind == "word" and len(words) == len(ids):
        listed = ", ".join(dict.fromkeys(words[i] for i in unknown))
        warn(f"prompt: {len(unknown)} word(s) not in the model's vocabulary, read as <unk>: {listed}")
    else:
        warn(f"prompt: {len(unknown)} token(s) not in the model's vocabulary, read as <unk>")
