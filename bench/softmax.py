"""Full against adaptive softmax within one wall-clock budget, beside a plain PyTorch loop.

Three runs on the same corpus, model shape, batches and budget of training seconds:

  plain PyTorch loop   embedding -> nn.LSTM -> nn.Linear, cross-entropy, total-norm
                       clipping, Adam: the textbook loop written out here (the baseline)
  rnnlm full           rnnlm's trainer (TrainJob / run_training), full softmax
  rnnlm adaptive       rnnlm's trainer with the adaptive softmax (--cutoffs)

DIR holds train.txt, valid.txt and test.txt. train.txt and valid.txt are tokenized once
(word tokenizer) into token files that all three runs read. The trainer validates when its
budget ends and keeps the best model; that validation is not counted in the budget. The
plain loop's weights are loaded into an rnnlm model of the same shape (the parameters
have the same names and shapes), so all three are scored by the same code:
``evaluate_file`` on valid.txt and test.txt, continuous-stream context, SRILM's ppl
(words + line ends, OOVs left out). No dropout anywhere: the plain loop has none.
Scoring all of WikiText-2's valid and test sets with the full softmax takes minutes on a
CPU; ``--score-lines N`` validates and scores only their first N lines.

Each run happens in a fresh process, so its peak RSS (getrusage's ru_maxrss, taken when
training ends, before scoring) is its own; the trainer's includes its validation and
checkpoint writes, which are part of a run. On CUDA the peak of allocated GPU memory is
printed too. Mixed precision follows rnnlm train's --amp (auto: bf16 on CUDA or a CPU with AMX), and
the plain loop runs under the same autocast, so the three differ only in the loop and the
softmax.

    python3 bench/softmax.py --data ../shared/data/wikitext-2 --budget 60
    python3 bench/softmax.py --data ../shared/data/wikitext-2 --budget 20 --score-lines 500
    python3 bench/softmax.py --data .data/wikitext-2 --device cuda --hidden 1024 --emb 512 \\
        --batch-size 64 --budget 120
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from rnnlm_cli.text.batching import bptt_streams, iter_bptt  # noqa: E402
from rnnlm_cli.store.checkpoint import load_model, save_checkpoint  # noqa: E402
from rnnlm_cli.config import TokenizerConfig, TrainConfig  # noqa: E402
from rnnlm_cli.models.config import ModelConfig  # noqa: E402
from rnnlm_cli.text.corpus import encode_corpus  # noqa: E402
from rnnlm_cli.device import resolve_device, synchronize  # noqa: E402
from rnnlm_cli.score.evaluate import evaluate_file  # noqa: E402
from rnnlm_cli.models.lm import build_model  # noqa: E402
from rnnlm_cli.text.tokenfile import open_token_file  # noqa: E402
from rnnlm_cli.device import amp_enabled, bf16_autocast  # noqa: E402
from rnnlm_cli.train.job import TrainJob  # noqa: E402
from rnnlm_cli.train.run import run_training  # noqa: E402

VARIANTS = ("plain PyTorch loop", "rnnlm full", "rnnlm adaptive")
INIT_RANGE = 0.1
"""word_language_model's uniform init of the embedding and decoder."""


class PlainLM(nn.Module):
    """The textbook LSTM language model. Attribute names match rnnlm's model
    (``embedding``, ``rnn``, ``decoder``) so its state dict loads into one for scoring."""

    def __init__(self, vocab_size: int, emb: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb)
        self.rnn = nn.LSTM(emb, hidden, layers)
        self.decoder = nn.Linear(hidden, vocab_size)
        nn.init.uniform_(self.embedding.weight, -INIT_RANGE, INIT_RANGE)
        nn.init.uniform_(self.decoder.weight, -INIT_RANGE, INIT_RANGE)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, x, state):
        y, state = self.rnn(self.embedding(x), state)  # (T, B, H)
        return self.decoder(y), state  # (T, B, V)


def plain_loop(model: PlainLM, tokens, config: TrainConfig, device: torch.device) -> tuple[float, int, int]:
    """Train until ``config.max_time`` seconds are spent; returns (seconds, steps, tokens)."""
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    streams = bptt_streams(tokens, config.batch_size)
    amp = amp_enabled(config.amp, device)
    shape = (model.rnn.num_layers, config.batch_size, model.rnn.hidden_size)
    steps = seen = 0
    synchronize(device)
    start = time.perf_counter()
    while True:
        state = (torch.zeros(shape, device=device), torch.zeros(shape, device=device))
        for x, y in iter_bptt(streams, config.bptt):
            x, y = x.to(device), y.to(device)  # (T, B)
            state = tuple(s.detach() for s in state)
            with bf16_autocast(device, amp):
                logits, state = model(x, state)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            loss.item()
            steps += 1
            seen += y.numel()
            if time.perf_counter() - start >= config.max_time:
                synchronize(device)
                return time.perf_counter() - start, steps, seen


def run_variant(name: str, work: str, texts: tuple[str, str], model_config: ModelConfig, config: TrainConfig) -> dict:
    """Train and score one variant; runs in its own process so its peak RSS is its own."""
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out = os.path.join(work, name.replace(" ", "-"), "model.pt")
    os.makedirs(os.path.dirname(out))
    train_tok, valid_tok = os.path.join(work, "train.tok"), os.path.join(work, "valid.tok")
    if name == "plain PyTorch loop":
        torch.manual_seed(config.seed)
        train = open_token_file(train_tok)
        model = PlainLM(model_config.vocab_size, model_config.emb, model_config.hidden, model_config.layers)
        seconds, steps, seen = plain_loop(model, train.tokens, config, device)
        rss, gpu = peak_memory(device)
        save_checkpoint(out, model_shaped_like(model, model_config), train.tokenizer.to_dict())
    else:
        job = TrainJob(corpus=train_tok, valid=valid_tok, out=out, model=model_config, train=config)
        result = run_training(job)
        seconds, steps, seen = result.seconds, result.steps, result.train_tokens
        rss, gpu = peak_memory(device)
    lm, tokenizer, _ = load_model(out, device)
    valid, test = (evaluate_file(lm, tokenizer, path, device) for path in texts)
    return {"name": name, "rate": seen / seconds, "seconds": seconds, "steps": steps,
            "valid": valid.ppl, "test": test.ppl, "rss": rss, "gpu": gpu}


def peak_memory(device: torch.device) -> tuple[float, float]:
    """(peak RSS, peak allocated GPU memory) of this process so far, MiB; nan without CUDA."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return rss, torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")


def model_shaped_like(plain: PlainLM, config: ModelConfig):
    lm = build_model(config)
    lm.load_state_dict({k: v.detach().cpu() for k, v in plain.state_dict().items()})
    return lm


def first_lines(path: str, count: int, work: str) -> str:
    """``path`` itself, or with ``count`` a copy of its first ``count`` lines in ``work``."""
    if count <= 0:
        return path
    copy = os.path.join(work, "first-" + os.path.basename(path))
    with open(path, "rb") as source, open(copy, "wb") as target:
        target.writelines(itertools.islice(source, count))
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with train.txt, valid.txt, test.txt")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of training per run")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--emb", type=int, default=128)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--cutoffs", default="1000,5000,15000", help="adaptive softmax cutoffs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"))
    parser.add_argument("--score-lines", type=int, default=0,
                        help="validate and score only the first N lines of valid.txt and test.txt (0: all)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    train = TrainConfig(lr=args.lr, optimizer="adam", clip=0.25, batch_size=args.batch_size, bptt=args.bptt,
                        max_time=args.budget, epochs=10_000, device=str(device), amp=args.amp)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        stats = encode_corpus(os.path.join(args.data, "train.txt"), os.path.join(work, "train.tok"),
                              config=TokenizerConfig(kind="word"))
        texts = tuple(first_lines(os.path.join(args.data, f"{split}.txt"), args.score_lines, work)
                      for split in ("valid", "test"))
        encode_corpus(texts[0], os.path.join(work, "valid.tok"), tokenizer=stats.tokenizer)
        encode_seconds = time.perf_counter() - start
        train_tokens = len(open_token_file(os.path.join(work, "train.tok")))
        full = ModelConfig(vocab_size=stats.tokenizer.vocab_size, cell="lstm", emb=args.emb, hidden=args.hidden,
                           layers=args.layers, dropout=0.0)
        adaptive = dataclasses.replace(full, adaptive_softmax=args.cutoffs)
        if adaptive.cutoffs[-1] >= full.vocab_size:
            parser.error(f"--cutoffs {args.cutoffs}: the last cutoff must be below the vocabulary size "
                         f"({full.vocab_size})")
        for name, model_config in zip(VARIANTS, (full, full, adaptive)):
            # A fresh interpreter per run: getrusage's peak is per process and never goes down.
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                rows.append(pool.submit(run_variant, name, work, texts, model_config, train).result())
            print(f"done: {name}", file=sys.stderr)

    where = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else \
        f"{device} ({os.cpu_count()} threads available, torch uses {torch.get_num_threads()})"
    print(f"device {where}; amp {'bf16' if amp_enabled(args.amp, device) else 'off'}")
    print(f"corpus {args.data}: {train_tokens:,} training tokens, vocab {stats.tokenizer.vocab_size:,}, "
          f"tokenized in {encode_seconds:.1f} s")
    print(f"model lstm {args.layers}x{args.hidden} emb {args.emb}, no dropout; adam lr {args.lr:g}, clip 0.25; "
          f"batch {args.batch_size} x bptt {args.bptt}; budget {args.budget:g} s of training per run; "
          f"adaptive cutoffs {args.cutoffs}")
    scored = f"the first {args.score_lines:,} lines of" if args.score_lines > 0 else "all of"
    print(f"valid and test ppl: {scored} valid.txt and test.txt, stream context, SRILM ppl (words + line ends)")
    gpu_head = f" {'GPU peak MiB':>13}" if device.type == "cuda" else ""
    print(f"{'run':<20} {'tokens/s':>10} {'train s':>8} {'steps':>7} {'valid ppl':>10} {'test ppl':>10} "
          f"{'peak RSS MiB':>13}{gpu_head}")
    for row in rows:
        gpu = f" {row['gpu']:>13.0f}" if device.type == "cuda" else ""
        print(f"{row['name']:<20} {row['rate']:>10,.0f} {row['seconds']:>8.1f} {row['steps']:>7,} "
              f"{row['valid']:>10.2f} {row['test']:>10.2f} {row['rss']:>13.0f}{gpu}")


if __name__ == "__main__":
    main()
