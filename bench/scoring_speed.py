"""Scoring speed: words per second of ``rnnlm eval`` beside a plain PyTorch loop, same run.

    python3 bench/scoring_speed.py --model wt2/model.pt --text .data/wikitext-2/test.txt
    python3 bench/scoring_speed.py --model wt2/model.pt --text .data/wikitext-2/test.txt --copies 20

The baseline is the loop a PyTorch user writes first: each line alone, one forward pass,
the log-softmax over the whole vocabulary, the targets' entries summed. Then the same
text through ``score_file`` in each context (``sentence``: every line from a fresh
state, as faster-rnnlm and the baseline score; ``stream``: the state carried) and each
precision (``--amp off|bf16``). Every row prints its perplexity, so a faster row that
scores differently shows it. ``--copies N`` scores the text repeated N times (a large
corpus, streamed from a temporary file). Words/s counts words and line ends, as the
perplexity does; start-up (importing torch, loading the model) is left out and printed
once. ``--baseline-lines`` bounds the slow baseline; its speed is per line, so a prefix
measures it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

_started = time.perf_counter()
import torch  # noqa: E402

from rnnlm_cli.store.checkpoint import load_model  # noqa: E402
from rnnlm_cli.device import resolve_device, synchronize  # noqa: E402
from rnnlm_cli.score.evaluate import score_file  # noqa: E402
from rnnlm_cli.score.scoring_config import ScoringConfig  # noqa: E402


@torch.no_grad()
def baseline(model, tokenizer, lines: list[str], device) -> tuple[float, float, int]:
    """(ppl, seconds, words + line ends) of the plain loop over ``lines``; OOVs scored as <unk>."""
    logprob, counted = 0.0, 0
    start = time.perf_counter()
    for line in lines:
        ids = tokenizer.encode(line)
        inputs = torch.tensor([tokenizer.eos_id] + ids, device=device).unsqueeze(1)  # (T, 1)
        targets = torch.tensor(ids + [tokenizer.eos_id], device=device)
        features, _ = model.hidden_states(inputs)
        logprobs = torch.log_softmax(model.decode(features[:, 0]).float(), dim=-1)  # (T, V)
        logprob += float(logprobs[torch.arange(len(targets), device=device), targets].sum())
        counted += len(line.split()) + 1
    synchronize(device)
    return math.exp(-logprob / counted), time.perf_counter() - start, counted


def ours(model, tokenizer, path: str, device, context: str, amp: str) -> tuple[float, float, int]:
    """(ppl, seconds, words + line ends) of ``score_file`` on ``path``."""
    start = time.perf_counter()
    with ScoringConfig(context=context, amp=amp).precision(device):
        result = score_file(model, tokenizer, path, device, context=context, unk=True)
    synchronize(device)
    return result.ppl, time.perf_counter() - start, result.words + result.sentences


def row(name: str, ppl: float, seconds: float, words: int) -> None:
    print(f"{name:<34} {words / seconds:>12,.0f} {seconds:>9.2f} {ppl:>10.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--text", required=True)
    parser.add_argument("--copies", type=int, default=1, help="score the text repeated this many times")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--baseline-lines", type=int, default=1000)
    parser.add_argument("--contexts", nargs="+", default=["sentence", "stream"])
    parser.add_argument("--amp", nargs="+", default=["off", "bf16"])
    args = parser.parse_args()

    device = resolve_device(args.device)
    model, tokenizer, _ = load_model(args.model, device)
    model.eval()
    print(f"device {device}; {torch.get_num_threads()} threads; torch {torch.__version__}; "
          f"start-up (import torch, load model) {time.perf_counter() - _started:.1f} s")
    with open(args.text, encoding="utf-8") as handle:
        text = handle.read()
    lines = text.splitlines()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.text
        if args.copies > 1:
            path = os.path.join(scratch, "copies.txt")
            with open(path, "w", encoding="utf-8") as out:
                for _ in range(args.copies):
                    out.write(text if text.endswith("\n") else text + "\n")
        print(f"{args.text} x{args.copies}: {len(lines) * args.copies:,} lines")
        print(f"{'method':<34} {'words/s':>12} {'seconds':>9} {'ppl':>10}")
        row(f"baseline loop, first {min(len(lines), args.baseline_lines)} lines",
            *baseline(model, tokenizer, lines[: args.baseline_lines], device))
        for context in args.contexts:
            for amp in args.amp:
                row(f"rnnlm eval --context {context} --amp {amp}", *ours(model, tokenizer, path, device, context, amp))


if __name__ == "__main__":
    main()
