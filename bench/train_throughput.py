"""Training throughput of `rnnlm train`'s loop beside a plain PyTorch loop, same model and data.

The baseline is the loop of pytorch/examples' word_language_model written out:
embedding -> torch LSTM -> linear decoder, cross-entropy, total-norm clipping, optimizer
step, with a loss `.item()` per step as that example does. Both run the same number of
steps over the same batches; the report prints tokens/s, wall time and peak memory.

    python3 bench/train_throughput.py --data sample_data/train.txt --steps 200
    python3 bench/train_throughput.py --data .data/wikitext-2/train.txt --device cuda \
        --emb 650 --hidden 650 --tied --batch-size 64 --bptt 70 --steps 300
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from rnnlm_cli.text.batching import bptt_streams, iter_bptt  # noqa: E402
from rnnlm_cli.config import TokenizerConfig, TrainConfig  # noqa: E402
from rnnlm_cli.models.config import ModelConfig  # noqa: E402
from rnnlm_cli.text.corpus import encode_corpus  # noqa: E402
from rnnlm_cli.device import resolve_device, synchronize  # noqa: E402
from rnnlm_cli.models.lm import build_model, detach_state  # noqa: E402
from rnnlm_cli.text.tokenfile import open_token_file  # noqa: E402
from rnnlm_cli.train.loop import OutputPaths, Trainer  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plain_loop(model, tokens, config: TrainConfig, device, steps: int) -> tuple[float, int]:
    """The textbook loop; returns (seconds, tokens)."""
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    streams = bptt_streams(tokens, config.batch_size)
    state = model.init_state(config.batch_size, device=device)
    seen, done = 0, 0
    synchronize(device)
    start = time.perf_counter()
    while done < steps:
        for x, y in iter_bptt(streams, config.bptt):
            x, y = x.to(device), y.to(device)
            state = detach_state(state)
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            loss.item()
            seen += y.numel()
            done += 1
            if done == steps:
                break
    synchronize(device)
    return time.perf_counter() - start, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sample_data/train.txt")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--emb", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--tied", action="store_true")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bptt", type=int, default=35)
    args = parser.parse_args()

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        stats = encode_corpus(args.data, os.path.join(work, "train.tok"), config=TokenizerConfig(kind="word"))
        encode_seconds = time.perf_counter() - start
        tokens = open_token_file(os.path.join(work, "train.tok")).tokens
        valid = tokens[-20_000:]
        model_config = ModelConfig(vocab_size=stats.tokenizer.vocab_size, cell=args.cell, emb=args.emb,
                                   hidden=args.hidden, layers=args.layers, dropout=0.0, tied=args.tied)
        config = TrainConfig(lr=1e-3, batch_size=args.batch_size, bptt=args.bptt, max_steps=args.steps,
                             epochs=10_000, device=str(device), log_interval=10**9, clip=0.25)

        rows = []
        for name in ("plain PyTorch loop", "rnnlm trainer"):
            torch.manual_seed(0)
            model = build_model(model_config)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            if name == "rnnlm trainer":
                result = Trainer(model, tokens, valid, stats.tokenizer.to_dict(), config, device,
                                 OutputPaths.beside(os.path.join(work, "model.pt"))).run()
                seconds, seen = result.seconds, result.train_tokens
            else:
                seconds, seen = plain_loop(model, tokens, config, device, args.steps)
            gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
            rows.append((name, seen / seconds, seconds, gpu, peak_rss_mb()))

    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else os.cpu_count()} "
          f"{'' if device.type == 'cuda' else 'CPU threads available, torch uses ' + str(torch.get_num_threads())}); "
          f"corpus {args.data}: {len(tokens):,} tokens, vocab {stats.tokenizer.vocab_size:,}, encoded in {encode_seconds:.1f} s")
    print(f"model {args.cell} {args.layers}x{args.hidden} emb {args.emb}{' tied' if args.tied else ''}, "
          f"batch {args.batch_size} x bptt {args.bptt}, {args.steps} steps")
    print(f"{'run':<20} {'tokens/s':>12} {'wall s':>8} {'GPU peak MiB':>13} {'peak RSS MiB':>13}")
    for name, rate, seconds, gpu, rss in rows:
        print(f"{name:<20} {rate:>12,.0f} {seconds:>8.2f} {gpu:>13.0f} {rss:>13.0f}")


if __name__ == "__main__":
    main()
