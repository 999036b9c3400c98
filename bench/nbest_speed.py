"""N-best rescoring speed: hypotheses per second of ``rnnlm eval --nbest`` beside the loop a
PyTorch user writes, same run.

    python3 bench/nbest_speed.py --model runs/sample/model.pt --text sample_data/test.txt
    python3 bench/nbest_speed.py --model runs/sample/model.pt --nbest hyps.nbest --device cuda

Lists are built as bench/rescoring_quality.py builds them (each of ``--lists`` sentences of
``--min-words`` to ``--max-words`` words, plus ``--size - 1`` distinct corruptions by swaps,
substitutions and deletions), or read from ``--nbest`` (SRILM or Kaldi layout). Rows:

* ``loop``: each hypothesis alone, one forward pass from a fresh state, the log-softmax over
  the vocabulary, its targets' entries summed (first ``--baseline-hyps`` hypotheses);
* ``per list``: rescoring as it was before lists were batched together: each list's
  distinct texts in one call of ``TextScorer`` (length-sorted batches), handed on alone;
* ``window W, plain`` / ``window W, tree``: ``rescore_nbest`` with lists batched ``W``
  hypotheses at a time, through length-sorted batches or the prefix tree;
* ``default``: ``rescore_nbest`` as ``rnnlm eval --nbest`` calls it.

Every row prints hypotheses/s, wall seconds, the peak resident memory while it ran (RSS,
sampled every 5 ms; the process' RSS before the first row is printed once), and the
largest difference of its LM scores (log10) from the ``per list`` row's. Start-up
(importing torch, loading the model) is left out and printed once.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_started = time.perf_counter()
import torch  # noqa: E402

from rescoring_quality import nbest_lists, read_sentences  # noqa: E402
from rnnlm_cli.device import resolve_device, synchronize  # noqa: E402
from rnnlm_cli.score.evaluate import TextScorer  # noqa: E402
from rnnlm_cli.score.nbest import iter_nbest, rescore  # noqa: E402
from rnnlm_cli.score.rescoring import WINDOW_HYPOTHESES, rescore_nbest  # noqa: E402
from rnnlm_cli.score.scoring_config import ScoringConfig  # noqa: E402
from rnnlm_cli.store.checkpoint import load_model  # noqa: E402
from rnnlm_cli.units import LN10  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakRss:
    """The largest RSS seen while the block runs, sampled on a thread."""

    def __enter__(self) -> "PeakRss":
        self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


@torch.no_grad()
def loop(model, tokenizer, path: str, device, limit: int) -> dict[str, float]:
    """Each hypothesis alone: one forward pass from a fresh state; OOVs scored as <unk>."""
    scores: dict[str, float] = {}
    for nbest_list in iter_nbest(path):
        for hyp in nbest_list.hypotheses:
            if len(scores) == limit:
                return scores
            ids = tokenizer.encode(hyp.text)
            inputs = torch.tensor([tokenizer.eos_id] + ids, device=device).unsqueeze(1)  # (T, 1)
            targets = torch.tensor(ids + [tokenizer.eos_id], device=device)  # (T,)
            logits, _ = model(inputs)  # (T, 1, V)
            logprobs = torch.log_softmax(logits[:, 0].float(), dim=-1)  # (T, V)
            scores[hyp.key] = float(logprobs[torch.arange(len(targets), device=device), targets].sum()) / LN10
    return scores


def per_list(model, tokenizer, path: str, device) -> dict[str, float]:
    """rescore_nbest as it was: each list's texts in one TextScorer call, the list handed on alone."""
    scorer = TextScorer(model, tokenizer, device, unk=True)
    scores: dict[str, float] = {}
    for _, rows in rescore(iter_nbest(path), lambda texts: [t.logprob for t in scorer.score(texts)], 1.0, 0.0,
                           False):
        scores.update((hyp.key, lm) for hyp, lm, _ in rows)
    return scores


def windowed(model, tokenizer, path: str, device, amp: str = "off", **options) -> dict[str, float]:
    scores: dict[str, float] = {}

    def keep(_count, _nbest_list, rows) -> None:
        scores.update((hyp.key, lm) for hyp, lm, _ in rows)

    rescore_nbest(model, tokenizer, path, device, ScoringConfig(context="sentence", amp=amp), on_list=keep, **options)
    return scores


def write_lists(path: str, text: str, lists: int, size: int, min_words: int, max_words: int, seed: int) -> None:
    rng = random.Random(seed)
    sentences = read_sentences(text)
    unigram = [word for words in sentences for word in words]
    chosen = [s for s in sentences if min_words <= len(s) <= max_words]
    with open(path, "w", encoding="utf-8") as out:
        for number, hypotheses in enumerate(nbest_lists(chosen, lists, size, rng, unigram)):
            for words in hypotheses:
                out.write(f"utt{number} 0 0 {len(words)} {' '.join(words)}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="sentences to build n-best lists from")
    source.add_argument("--nbest", help="an n-best file to score as it is")
    parser.add_argument("--lists", type=int, default=300)
    parser.add_argument("--size", type=int, default=10, help="hypotheses per list")
    parser.add_argument("--min-words", type=int, default=9)
    parser.add_argument("--max-words", type=int, default=11)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--windows", type=int, nargs="+", default=[WINDOW_HYPOTHESES])
    parser.add_argument("--amp", default="off", help="precision of the rescore_nbest rows: off or bf16")
    parser.add_argument("--baseline-hyps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1, help="time each row this many times, keep the fastest")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, tokenizer, _ = load_model(args.model, device)
    model.eval()
    c = model.config
    print(f"device {device}; {torch.get_num_threads()} threads; torch {torch.__version__}; "
          f"model {c.layers}x{c.hidden} {c.cell}, V={c.vocab_size}; "
          f"start-up (import torch, load model) {time.perf_counter() - _started:.1f} s")
    with tempfile.TemporaryDirectory() as scratch:
        path = args.nbest
        if path is None:
            path = os.path.join(scratch, "lists.nbest")
            write_lists(path, args.text, args.lists, args.size, args.min_words, args.max_words, args.seed)
        hyps = [hyp for nbest_list in iter_nbest(path) for hyp in nbest_list.hypotheses]
        utterances = len({hyp.utterance for hyp in hyps})
        words = sum(len(hyp.words) for hyp in hyps) / max(len(hyps), 1)
        print(f"{path if args.nbest else 'built from ' + args.text}: {utterances} lists, {len(hyps)} hypotheses, "
              f"{words:.1f} words each; RSS before {rss_mib():.0f} MiB")
        print(f"{'method':<28} {'hyps/s':>10} {'seconds':>9} {'peak RSS MiB':>13} {'max |diff|':>11}")
        reference: dict[str, float] = {}

        def row(name: str, run, count: int) -> None:
            best, scores, peak = float("inf"), {}, 0.0
            for _ in range(args.repeat):
                with PeakRss() as rss:
                    start = time.perf_counter()
                    scores = run()
                    synchronize(device)
                    best = min(best, time.perf_counter() - start)
                peak = max(peak, rss.peak)
            if not reference:
                reference.update(scores)
            diff = max(abs(scores[key] - reference[key]) for key in scores)
            print(f"{name:<28} {count / best:>10,.0f} {best:>9.2f} {peak:>13.0f} {diff:>11.2g}", flush=True)

        row("per list (before)", lambda: per_list(model, tokenizer, path, device), len(hyps))
        limit = min(args.baseline_hyps, len(hyps))
        row(f"loop, first {limit}", lambda: loop(model, tokenizer, path, device, limit), limit)
        for window in args.windows:
            for prefix, label in (("off", "plain"), ("on", "tree")):
                row(f"window {window}, {label}",
                    lambda: windowed(model, tokenizer, path, device, args.amp, window=window, prefix=prefix), len(hyps))
        row("default", lambda: windowed(model, tokenizer, path, device, args.amp), len(hyps))


if __name__ == "__main__":
    main()
