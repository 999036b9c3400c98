"""Training cost against model size: tokens/s and peak memory, full beside adaptive softmax.

For every hidden size, vocabulary size and batch size of the grid, rnnlm's model
(``build_model``) takes training steps as rnnlm's trainer takes them: the state carried
from step to step and detached, ``forward(x, state, targets=y)``, loss ``-scores.mean()``,
backward, total-norm clipping at 0.25, one host synchronisation (the trainer's finiteness
check), Adam step (torch's fused kernels, as ``rnnlm train`` builds it); under bf16
autocast when ``--amp`` says so (auto: CUDA, or a CPU with AMX), as ``rnnlm train`` does.
Each row is one shape with the full softmax (the baseline) beside the adaptive softmax,
whose cutoffs scale with the vocabulary as 1000,5000,15000 do with a 33,000-word one
(WikiText-2's, as the ``wt2-cpu-quick`` preset has them): 10,000 words get
303,1515,4545, 100,000 get 3030,15151,45454.

The tokens are random, drawn from a Zipf distribution (p(id) proportional to 1 / (id + 1)):
like a word vocabulary ordered by frequency, most targets fall in the adaptive softmax's
head, which is what its cost depends on. The first ``--warmup`` steps are not timed.

Peak memory is what the run adds on top of what the process held before the model was
built: on CUDA ``torch.cuda.max_memory_allocated`` (after a reset) less the memory then
allocated; on the CPU each shape runs in a fresh process (Linux: /proc and getrusage), and
the figure is its peak resident set size (``ru_maxrss``) less its resident size just
before the model was built: weights, gradients, Adam's moments and activations, plus
whatever the allocator keeps.

    python3 bench/cost_table.py --device cuda
    python3 bench/cost_table.py --hidden 256 512 --vocab 10000 33000 --batch 32 --steps 5
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from rnnlm_cli.config import TrainConfig  # noqa: E402
from rnnlm_cli.models.config import ModelConfig  # noqa: E402
from rnnlm_cli.device import amp_enabled, bf16_autocast, resolve_device, synchronize  # noqa: E402
from rnnlm_cli.models.lm import build_model, detach_state  # noqa: E402
from rnnlm_cli.train.optimizers import make_optimizer  # noqa: E402

REFERENCE_VOCAB = 33_000
REFERENCE_CUTOFFS = (1000, 5000, 15000)
CLIP = 0.25


def scaled_cutoffs(vocab: int) -> str:
    """REFERENCE_CUTOFFS scaled from REFERENCE_VOCAB to ``vocab``, kept increasing and below it."""
    cutoffs = sorted({min(max(1, c * vocab // REFERENCE_VOCAB), vocab - 1) for c in REFERENCE_CUTOFFS})
    return ",".join(str(c) for c in cutoffs)


def zipf_streams(vocab: int, length: int, batch: int, seed: int = 0) -> torch.Tensor:
    """(length + 1, batch) token ids, p(id) proportional to 1 / (id + 1)."""
    weights = 1.0 / np.arange(1, vocab + 1)
    ids = np.random.default_rng(seed).choice(vocab, size=(length + 1, batch), p=weights / weights.sum())
    return torch.from_numpy(ids.astype(np.int64))


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise OSError("no VmRSS in /proc/self/status")


def measure(hidden: int, emb: int, layers: int, vocab: int, cutoffs: str, batch: int, options: dict) -> tuple[float, float]:
    """(tokens/s, peak memory MiB added by the run) for one shape."""
    device = resolve_device(options["device"])
    bptt, warmup, steps = options["bptt"], options["warmup"], options["steps"]
    data = zipf_streams(vocab, (warmup + steps) * bptt, batch).to(device)  # (L + 1, B)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**20
    else:
        before = rss_mb()
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=vocab, cell="lstm", emb=emb, hidden=hidden, layers=layers,
                                    dropout=0.0, adaptive_softmax=cutoffs)).to(device).train()
    optimizer = make_optimizer(model, TrainConfig(optimizer="adam", lr=2e-3))  # as rnnlm train builds it
    amp = amp_enabled(options["amp"], device)
    state = model.init_state(batch, device=device)
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(device)
            start = time.perf_counter()
        x, y = data[step * bptt:(step + 1) * bptt], data[step * bptt + 1:(step + 1) * bptt + 1]  # (T, B)
        state = detach_state(state)
        with bf16_autocast(device, amp):
            scores, state = model(x, state, targets=y)  # (T, B)
        loss = -scores.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        bool(torch.isfinite(loss) & torch.isfinite(norm))
        optimizer.step()
    synchronize(device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return steps * bptt * batch / seconds, peak - before


def run_one(device: torch.device, *shape, options: dict) -> tuple[float, float] | str:
    """``measure`` in this process (CUDA) or a fresh one (CPU); a short word when it fails."""
    if device.type != "cuda":
        # getrusage's peak is per process and never goes down: one process per shape.
        try:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                return pool.submit(measure, *shape, options).result()
        except BrokenProcessPool:
            return "killed"
        except MemoryError:
            return "OOM"
        except RuntimeError as exc:
            return _out_of_memory(exc)
    try:
        return measure(*shape, options)
    except torch.cuda.OutOfMemoryError:
        return "OOM"
    except RuntimeError as exc:  # cuDNN's allocation failures are plain RuntimeErrors
        return _out_of_memory(exc)
    finally:
        gc.collect()
        torch.cuda.empty_cache()


def _out_of_memory(exc: RuntimeError) -> str:
    """"OOM" for an allocation failure; anything else is a real error."""
    message = str(exc).lower()
    if "out of memory" in message or "can't allocate memory" in message or "alloc_failed" in message:
        return "OOM"
    raise exc


def cells(result: tuple[float, float] | str) -> str:
    if isinstance(result, str):
        return f"{result:>10} {'':>9}"
    return f"{result[0]:>10,.0f} {result[1]:>9,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per shape")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--vocab", type=int, nargs="+", default=[10_000, 33_000, 100_000])
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--emb", type=int, default=0, help="embedding size (0: the hidden size)")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"))
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or min(args.vocab) < 3:
        parser.error("--steps must be positive, --warmup non-negative, every --vocab at least 3")

    device = resolve_device(args.device)
    options = {"device": str(device), "bptt": args.bptt, "warmup": args.warmup, "steps": args.steps, "amp": args.amp}
    if device.type == "cuda":
        where, memory = f"{device} ({torch.cuda.get_device_name(device)})", "max_memory_allocated"
    else:
        where = f"{device} ({os.cpu_count()} threads available, torch uses {torch.get_num_threads()})"
        memory = "peak RSS growth of a fresh process"
    print(f"device {where}; amp {'bf16' if amp_enabled(args.amp, device) else 'off'}; lstm x{args.layers}, "
          f"emb {'= hidden' if args.emb == 0 else args.emb}, bptt {args.bptt}, Zipf tokens; "
          f"{args.steps} timed steps after {args.warmup}; MiB: {memory}")
    print(f"{'hidden':>6} {'vocab':>7} {'batch':>5} | {'full tok/s':>10} {'MiB':>9} | "
          f"{'adapt tok/s':>10} {'MiB':>9} {'cutoffs':>12} | {'speed-up':>8}", flush=True)
    for hidden in args.hidden:
        for vocab in args.vocab:
            cutoffs = scaled_cutoffs(vocab)
            for batch in args.batch:
                shape = (hidden, args.emb or hidden, args.layers, vocab)
                full = run_one(device, *shape, "", batch, options=options)
                adaptive = run_one(device, *shape, cutoffs, batch, options=options)
                ratio = f"{adaptive[0] / full[0]:>7.2f}x" if not isinstance(full, str) and \
                    not isinstance(adaptive, str) else f"{'-':>8}"
                print(f"{hidden:>6} {vocab:>7} {batch:>5} | {cells(full)} | {cells(adaptive)} {cutoffs:>12} | "
                      f"{ratio}", flush=True)


if __name__ == "__main__":
    main()
