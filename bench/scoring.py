"""Evaluation-time adaptation: test perplexity plain, with the neural cache, with dynamic
evaluation, and with both, side by side, with the scoring speed of each.

    python3 bench/scoring.py --model wt2/model.pt --data .data/wikitext-2
    python3 bench/scoring.py --model wt2/model.pt --data .data/wikitext-2 --tune-lines 400

The plain score (continuous stream, no adaptation) is the baseline, measured in the same
run. ``--tune-lines N`` first picks the cache's theta and lambda and the dynamic learning
rate by a small grid on the first N lines of valid.txt, then scores test.txt with them.
Speed is in words per second: words and line ends scored, as the perplexity counts them.
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

from rnnlm_cli.store.checkpoint import load_model  # noqa: E402
from rnnlm_cli.device import resolve_device  # noqa: E402
from rnnlm_cli.score.evaluate import score_file  # noqa: E402
from rnnlm_cli.score.scoring_config import ScoringConfig  # noqa: E402


def score(model, tokenizer, path, device, config: ScoringConfig):
    """(ppl, words/s) of ``path`` under ``config``; the model's weights are put back after."""
    dynamic = config.build_dynamic(model)
    start = time.perf_counter()
    result = score_file(model, tokenizer, path, device, context=config.context, cache=config.build_cache(),
                        dynamic=dynamic, chunk_tokens=config.chunk_tokens)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if dynamic is not None:
        dynamic.restore()
    return result.ppl, (result.words + result.sentences) / seconds


def tune(model, tokenizer, path, device, base: ScoringConfig) -> ScoringConfig:
    """The best cache and dynamic settings on ``path`` by a small grid, one knob family at a time."""
    best_cache = min(
        (ScoringConfig(cache=base.cache, cache_theta=theta, cache_lambda=weight)
         for theta, weight in itertools.product((0.1, 0.2, 0.3, 0.5), (0.05, 0.1, 0.15, 0.2))),
        key=lambda config: _report("tune", config, *score(model, tokenizer, path, device, config)))
    best_dynamic = min(
        (ScoringConfig(dynamic=True, dynamic_lr=lr, dynamic_decay=decay, dynamic_segment=base.dynamic_segment)
         for lr, decay in itertools.product((0.01, 0.03, 0.1, 0.3), (0.0, 0.01))),
        key=lambda config: _report("tune", config, *score(model, tokenizer, path, device, config)))
    return ScoringConfig(cache=base.cache, cache_theta=best_cache.cache_theta, cache_lambda=best_cache.cache_lambda,
                         dynamic=True, dynamic_lr=best_dynamic.dynamic_lr, dynamic_decay=best_dynamic.dynamic_decay,
                         dynamic_segment=base.dynamic_segment)


def _report(stage: str, config: ScoringConfig, ppl: float, speed: float) -> float:
    print(f"{stage:6} {_describe(config):58} ppl {ppl:9.2f}  {speed:9,.0f} words/s", file=sys.stderr, flush=True)
    return ppl


def _describe(config: ScoringConfig) -> str:
    parts = []
    if config.cache:
        parts.append(f"cache {config.cache} theta {config.cache_theta:g} lambda {config.cache_lambda:g}")
    if config.dynamic:
        parts.append(f"dynamic lr {config.dynamic_lr:g} decay {config.dynamic_decay:g} "
                     f"segment {config.dynamic_segment}")
    return ", ".join(parts) or "plain"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="folder with valid.txt and test.txt")
    parser.add_argument("--split", default="test.txt")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache", type=int, default=2000, help="cache size (positions)")
    parser.add_argument("--cache-theta", type=float, default=ScoringConfig.cache_theta)
    parser.add_argument("--cache-lambda", type=float, default=ScoringConfig.cache_lambda)
    parser.add_argument("--dynamic-lr", type=float, default=ScoringConfig.dynamic_lr)
    parser.add_argument("--dynamic-decay", type=float, default=ScoringConfig.dynamic_decay)
    parser.add_argument("--dynamic-segment", type=int, default=ScoringConfig.dynamic_segment)
    parser.add_argument("--tune-lines", type=int, default=0, help="tune on the first N lines of valid.txt first")
    args = parser.parse_args()

    device = resolve_device(args.device)
    model, tokenizer, _ = load_model(args.model, device)
    chosen = ScoringConfig(cache=args.cache, cache_theta=args.cache_theta, cache_lambda=args.cache_lambda,
                           dynamic=True, dynamic_lr=args.dynamic_lr, dynamic_decay=args.dynamic_decay,
                           dynamic_segment=args.dynamic_segment)
    if args.tune_lines:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as head:
            with open(os.path.join(args.data, "valid.txt"), encoding="utf-8") as valid:
                head.writelines(itertools.islice(valid, args.tune_lines))
        try:
            chosen = tune(model, tokenizer, head.name, device, chosen)
        finally:
            os.unlink(head.name)
    runs = [
        ScoringConfig(),
        ScoringConfig(cache=chosen.cache, cache_theta=chosen.cache_theta, cache_lambda=chosen.cache_lambda),
        ScoringConfig(dynamic=True, dynamic_lr=chosen.dynamic_lr, dynamic_decay=chosen.dynamic_decay,
                      dynamic_segment=chosen.dynamic_segment),
        chosen,
    ]
    path = os.path.join(args.data, args.split)
    name = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    print(f"model   {args.model}\ndevice  {name}, {torch.get_num_threads()} threads\ntext    {path}")
    baseline = None
    for config in runs:
        ppl, speed = score(model, tokenizer, path, device, config)
        baseline = baseline or ppl
        print(f"{_describe(config):70} ppl {ppl:8.2f} ({(ppl - baseline) / baseline:+6.1%})  {speed:9,.0f} words/s",
              flush=True)


if __name__ == "__main__":
    main()
