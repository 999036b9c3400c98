"""Quality within a wall-clock budget: train a preset, then score the test split.

    python3 bench/quality.py --data .data/wikitext-2 --budget 120 --preset wt2-gpu
    python3 bench/quality.py --data sample_data --budget 60 --preset sample-cpu

DIR holds train.txt, valid.txt and test.txt. Training stops at the budget (seconds of
training; validation not counted), the best checkpoint by validation is scored on the
test split in continuous-stream context, and one summary line per figure is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from rnnlm_cli.store.checkpoint import load_model  # noqa: E402
from rnnlm_cli.config import TokenizerConfig, TrainConfig, resolve  # noqa: E402
from rnnlm_cli.models.config import ModelConfig  # noqa: E402
from rnnlm_cli.device import resolve_device  # noqa: E402
from rnnlm_cli.score.evaluate import evaluate_file  # noqa: E402
from rnnlm_cli.presets import load_preset  # noqa: E402
from rnnlm_cli.train.job import TrainJob  # noqa: E402
from rnnlm_cli.train.run import run_training  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with train.txt, valid.txt, test.txt")
    parser.add_argument("--budget", type=float, required=True, help="seconds of training")
    parser.add_argument("--preset", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="keep the model here (default: a temporary folder)")
    args = parser.parse_args()

    preset = load_preset(args.preset)
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)} - {"vocab_size"}
    model = resolve(ModelConfig, {k: v for k, v in preset.items() if k in model_keys}, {}, vocab_size=2)
    train = resolve(TrainConfig, preset, {"max_time": args.budget, "device": args.device, "epochs": 10_000})
    tokenizer_keys = {f.name for f in dataclasses.fields(TokenizerConfig)} - {"kind"}
    tokenizer_config = resolve(TokenizerConfig, {k: v for k, v in preset.items() if k in tokenizer_keys}, {})
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as work:
        out = args.out or os.path.join(work, "model.pt")
        job = TrainJob(corpus=os.path.join(args.data, "train.txt"), valid=os.path.join(args.data, "valid.txt"),
                       out=out, model=model, train=train, tokenizer=preset.get("tokenizer"),
                       tokenizer_config=tokenizer_config)
        start = time.perf_counter()
        result = run_training(job)
        wall = time.perf_counter() - start
        lm, tokenizer, _ = load_model(out, device)
        scored = evaluate_file(lm, tokenizer, os.path.join(args.data, "test.txt"), device)

    name = f"{device} ({__import__('torch').cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    print(f"preset        {args.preset}")
    print(f"device        {name}")
    print(f"budget        {args.budget:.0f} s of training ({result.seconds:.1f} s used, {wall:.1f} s wall with data and validation)")
    print(f"steps         {result.steps} ({result.epochs:.2f} epochs, stopped by {result.stop_reason})")
    print(f"tokens/s      {result.tokens_per_second:,.0f}")
    print(f"valid ppl     {result.best_valid_ppl:.2f}")
    print(f"test ppl      {scored.ppl:.2f}  (SRILM ppl: words + sentences; {scored.oovs} OOVs)")


if __name__ == "__main__":
    main()
