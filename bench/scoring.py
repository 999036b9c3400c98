"""Evaluation-time adaptation: test perplexity plain, with the neural cache, with dynamic
evaluation (the fitted defaults: RMS steps, the rate fitted on the text's first tokens; and
plain SGD, also fitted), and with the cache and dynamic evaluation together, side by side,
with the scoring speed of each.

    python3 bench/scoring.py --model wt2/model.pt --data .data/wikitext-2
    python3 bench/scoring.py --model ptb/model.pt --data .data/ptb-text --context sentence --lines 1500

The plain score (no adaptation) is the baseline, measured in the same run, one scoring
after another. Speed is in words per second: words and line ends scored, as the perplexity
counts them, the fit on the first tokens included. ``--lines N`` scores the first N lines.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from rnnlm_cli.device import resolve_device  # noqa: E402
from rnnlm_cli.score.evaluate import evaluate_file  # noqa: E402
from rnnlm_cli.score.scoring_config import ScoringConfig  # noqa: E402
from rnnlm_cli.store.checkpoint import load_model  # noqa: E402


def score(model, tokenizer, path, device, config: ScoringConfig):
    """(result, words/s) of ``path`` under ``config``; the model's weights are put back after."""
    start = time.perf_counter()
    result = evaluate_file(model, tokenizer, path, device, config)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return result, (result.words + result.sentences) / seconds


def describe(config: ScoringConfig, result) -> str:
    parts = []
    if config.cache:
        parts.append(f"--cache {config.cache}")
    if config.dynamic:
        record = result.adaptation.record
        rate = "off" if record.get("lr") is None else f"{record['lr']:.3g}"
        parts.append(f"--dynamic --dynamic-rule {config.dynamic_rule} (lr {rate})")
    return " ".join(parts) or "plain"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="folder with the split to score")
    parser.add_argument("--split", default="test.txt")
    parser.add_argument("--lines", type=int, default=0, help="score only the first N lines (0: all)")
    parser.add_argument("--context", default="stream", choices=("stream", "sentence"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache", type=int, default=2000, help="cache size (positions)")
    parser.add_argument("--dynamic-segment", type=int, default=ScoringConfig.dynamic_segment)
    args = parser.parse_args()

    device = resolve_device(args.device)
    model, tokenizer, _ = load_model(args.model, device)
    path = os.path.join(args.data, args.split)
    if args.lines:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as head:
            with open(path, encoding="utf-8") as text:
                head.writelines(itertools.islice(text, args.lines))
        path = head.name
    dynamic = dict(dynamic=True, dynamic_segment=args.dynamic_segment)
    runs = [
        ScoringConfig(context=args.context),
        ScoringConfig(context=args.context, cache=args.cache),
        ScoringConfig(context=args.context, **dynamic),
        ScoringConfig(context=args.context, dynamic_rule="sgd", **dynamic),
        ScoringConfig(context=args.context, cache=args.cache, **dynamic),
    ]
    name = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    print(f"model   {args.model}\ndevice  {name}, {torch.get_num_threads()} threads\n"
          f"text    {os.path.join(args.data, args.split)}" + (f", first {args.lines} lines" if args.lines else "")
          + f", {args.context} context")
    baseline = None
    try:
        for config in runs:
            result, speed = score(model, tokenizer, path, device, config)
            baseline = baseline or result.ppl
            print(f"{describe(config, result):58} ppl {result.ppl:8.2f} ({(result.ppl - baseline) / baseline:+6.1%})"
                  f"  {speed:9,.0f} words/s", flush=True)
            if result.adaptation is not None:
                print(f"    {result.adaptation.line}", flush=True)
    finally:
        if args.lines:
            os.unlink(path)


if __name__ == "__main__":
    main()
