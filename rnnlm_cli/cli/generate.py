"""rnnlm generate: sample text from a model, streamed as it is produced."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from rnnlm_cli.cli.options import default_of, switch, with_default
from rnnlm_cli.cli.ui import warn
from rnnlm_cli.config import SamplingConfig

NAME = "generate"
SUMMARY = "Sample text from a model, streamed as it is drawn."
HELP = (
    "Sample text from MODEL, continuing --prompt. Tokens are printed as they are drawn; "
    "several samples (--num-samples) are drawn together as one batch and printed one after another, "
    "separated by a blank line (one per line with --stop-at-eos)."
)
EPILOG = (
    "Examples:\n\n"
    "  rnnlm generate runs/sample/model.pt --prompt \"the dogs\" --max-tokens 50 --seed 1\n\n"
    "  echo \"once upon a\" | rnnlm generate model.pt --prompt - --top-p 0.9 --temperature 0.8\n\n"
    "  rnnlm generate model.pt --num-samples 5 --stop-at-eos --top-k 40"
)


def command(
    model: str = typer.Argument(..., help="Model file written by 'rnnlm train'."),
    prompt: str = typer.Option("", help="Text to continue; '-' reads it from stdin."),
    max_tokens: int = typer.Option(default_of(SamplingConfig, "max_tokens"), help="Tokens to generate per sample."),
    temperature: float = typer.Option(default_of(SamplingConfig, "temperature"), help="Softmax temperature; 0 = always the most likely token."),
    top_k: int = typer.Option(default_of(SamplingConfig, "top_k"), help="Sample among the k most likely tokens; 0 = all."),
    top_p: float = typer.Option(default_of(SamplingConfig, "top_p"), help="Sample from the smallest set of tokens with probability >= p."),
    seed: Optional[int] = typer.Option(None, help=with_default(
        "Seed: the same seed gives the same text", SamplingConfig, "seed", {None: "random"})),
    num_samples: int = typer.Option(default_of(SamplingConfig, "num_samples"), help="Independent samples, drawn as one batch."),
    stop_at_eos: bool = switch(default_of(SamplingConfig, "stop_at_eos"), "--stop-at-eos", help="End each sample at its first end of line."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
) -> None:
    from rnnlm_cli.store.checkpoint import load_model
    from rnnlm_cli.device import resolve_device
    from rnnlm_cli.files.roles import FileRole, check_stdout_apart
    from rnnlm_cli.models.generate import sample_text

    config = SamplingConfig(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                            num_samples=num_samples, stop_at_eos=stop_at_eos, seed=seed)
    if prompt == "-":
        prompt = sys.stdin.read().rstrip("\r\n")
    check_stdout_apart([FileRole("MODEL", model)])
    target = resolve_device(device)
    lm, tokenizer, _ = load_model(model, target)
    _report_unknown(prompt, tokenizer.encode(prompt), tokenizer)
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
