"""Rescoring quality: how often a model ranks a real sentence above nine corrupted copies of it.

    python3 bench/make_ptb_shaped.py --data .data/wikitext-2 --out .data/ptb10k
    python3 bench/rescoring_quality.py --data .data/ptb10k --model runs/ptb/model.pt [MODEL ...]

An n-best task like the README's example: for each of --sentences test sentences (of 5 to 40
words), ten hypotheses: the sentence itself and nine distinct corruptions, each made by one
to three edits drawn from swapping two neighbouring words, substituting a word with one drawn
from the training unigram distribution, and deleting a word. Every hypothesis is scored as
a sentence on its own (``--context sentence``); the figure is top-1 accuracy, the share of
lists where the original scores strictly highest. An add-one (Laplace) bigram model counted
on the training split is the baseline, printed beside the models with hypotheses per second.

Every language model prefers a shorter sentence, and deletions make them. Two more figures
show what the model knows apart from length. "same length": top-1 against only the
corruptions as long as the original (swaps and substitutions). "bonus": a recogniser adds a
score per word (``rnnlm eval --nbest --word-penalty``, SRILM's ``-rescore-wtw``, Kaldi's word
insertion penalty) tuned on held-out lists; here the bonus that ranks the most originals first
among lists built the same way from valid.txt, applied to the test lists. No edit inserts a
word, so a large enough bonus rules out every deletion by length alone: read that figure as
the same-length one with the deletions' share added, not as the model's.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from rnnlm_cli.device import resolve_device  # noqa: E402
from rnnlm_cli.score.evaluate import evaluate_file  # noqa: E402
from rnnlm_cli.score.scoring_config import ScoringConfig  # noqa: E402
from rnnlm_cli.store.checkpoint import load_model  # noqa: E402

EDITS = ("swap", "substitute", "delete")


def read_sentences(path: str) -> list[list[str]]:
    with open(path, encoding="utf-8") as handle:
        return [line.split() for line in handle if line.split()]


def corrupt(words: list[str], rng: random.Random, unigram: list[str]) -> list[str]:
    """One to three random edits of ``words``."""
    out = list(words)
    for _ in range(rng.randint(1, 3)):
        edit = rng.choice(EDITS)
        if edit == "swap" and len(out) >= 2:
            i = rng.randrange(len(out) - 1)
            out[i], out[i + 1] = out[i + 1], out[i]
        elif edit == "substitute":
            out[rng.randrange(len(out))] = rng.choice(unigram)
        elif edit == "delete" and len(out) >= 2:
            del out[rng.randrange(len(out))]
    return out


def nbest_lists(sentences: list[list[str]], count: int, size: int, rng: random.Random,
                unigram: list[str]) -> list[list[list[str]]]:
    chosen = [s for s in sentences if 5 <= len(s) <= 40]
    rng.shuffle(chosen)
    lists = []
    for original in chosen:
        hypotheses, seen = [original], {tuple(original)}
        for _ in range(50 * size):
            if len(hypotheses) == size:
                break
            candidate = corrupt(original, rng, unigram)
            if tuple(candidate) not in seen:
                seen.add(tuple(candidate))
                hypotheses.append(candidate)
        if len(hypotheses) == size:
            lists.append(hypotheses)
        if len(lists) == count:
            break
    return lists


class LaplaceBigram:
    """P(w | v) = (c(v, w) + 1) / (c(v) + V), with <s> and </s> around each line."""

    def __init__(self, sentences: list[list[str]]) -> None:
        self.pairs: collections.Counter[tuple[str, str]] = collections.Counter()
        self.history: collections.Counter[str] = collections.Counter()
        vocabulary = {"</s>"}
        for words in sentences:
            tokens = ["<s>", *words, "</s>"]
            vocabulary.update(words)
            self.pairs.update(zip(tokens, tokens[1:]))
            self.history.update(tokens[:-1])
        self.size = len(vocabulary)

    def log10_prob(self, words: list[str]) -> float:
        tokens = ["<s>", *words, "</s>"]
        return sum(math.log10((self.pairs[(v, w)] + 1) / (self.history[v] + self.size))
                   for v, w in zip(tokens, tokens[1:]))


def top1(scores: list[float], size: int, lengths: list[int] | None = None, bonus: float = 0.0) -> float:
    """Share of lists whose first hypothesis scores strictly highest, with ``bonus`` (log10)
    added per word of ``lengths``."""
    if lengths is not None:
        scores = [score + bonus * length for score, length in zip(scores, lengths)]
    hits = 0
    for start in range(0, len(scores), size):
        group = scores[start:start + size]
        hits += all(group[0] > other for other in group[1:])
    return hits / max(len(scores) // size, 1)


def same_length_top1(scores: list[float], lengths: list[int], size: int) -> float:
    """Share of lists whose first hypothesis scores above every other of its length."""
    hits = 0
    for start in range(0, len(scores), size):
        group, length = scores[start:start + size], lengths[start]
        hits += all(group[0] > other for other, n in zip(group[1:], lengths[start + 1:start + size]) if n == length)
    return hits / max(len(scores) // size, 1)


BONUSES = [step / 10 for step in range(0, 101)]
"""Word bonuses tried on the held-out lists, in log10 per word (0 to 10)."""


def tuned_bonus(scores: list[float], lengths: list[int], size: int) -> float:
    """The per-word bonus that ranks the most held-out originals first (the smallest of ties)."""
    return max(BONUSES, key=lambda bonus: (top1(scores, size, lengths, bonus), -bonus))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with train.txt and test.txt")
    parser.add_argument("--model", nargs="*", default=[], help="rnnlm models to compare")
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--hypotheses", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    train = read_sentences(os.path.join(args.data, "train.txt"))
    unigram = [word for words in train for word in words]
    size = args.hypotheses
    held_out = nbest_lists(read_sentences(os.path.join(args.data, "valid.txt")), args.sentences, size, rng, unigram)
    lists = nbest_lists(read_sentences(os.path.join(args.data, "test.txt")), args.sentences, size, rng, unigram)
    hypotheses = [h for group in lists for h in group]
    tuning = [h for group in held_out for h in group]
    lengths, tuning_lengths = [len(h) for h in hypotheses], [len(h) for h in tuning]
    print(f"{len(lists)} lists of {size} hypotheses ({len(hypotheses):,} in all) from {args.data}/test.txt, "
          f"the word bonus tuned on {len(held_out)} lists from valid.txt; seed {args.seed}")
    print(f"{'model':44} {'top-1':>7} {'same length':>12} {'bonus':>6} {'top-1 with it':>14} {'hypotheses/s':>13}")

    def report(name: str, scores: list[float], tuning_scores: list[float], rate: float) -> None:
        bonus = tuned_bonus(tuning_scores, tuning_lengths, size)
        print(f"{name:44} {top1(scores, size):7.1%} {same_length_top1(scores, lengths, size):12.1%} {bonus:6.1f} "
              f"{top1(scores, size, lengths, bonus):14.1%} {rate:13,.0f}")

    bigram = LaplaceBigram(train)
    started = time.perf_counter()
    baseline = [bigram.log10_prob(h) for h in hypotheses]
    seconds = time.perf_counter() - started
    report("add-one bigram (train.txt)", baseline, [bigram.log10_prob(h) for h in tuning], len(hypotheses) / seconds)

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as folder:
        texts = {}
        for name, group in (("test", hypotheses), ("valid", tuning)):
            texts[name] = os.path.join(folder, f"{name}.txt")
            with open(texts[name], "w", encoding="utf-8") as handle:
                handle.writelines(" ".join(h) + "\n" for h in group)
        for path in args.model:
            model, tokenizer, _ = load_model(path, device)
            scored, rate = {}, 0.0
            for name in ("test", "valid"):
                scores: list[float] = []
                started = time.perf_counter()
                evaluate_file(model, tokenizer, texts[name], device, ScoringConfig(context="sentence", unk=True),
                              per_sentence=True, on_sentence=lambda _, logprob, into=scores: into.append(logprob),
                              skip_blank_lines=False)  # an empty hypothesis is scored: it competes
                rate = rate or len(scores) / (time.perf_counter() - started)
                scored[name] = scores
            assert len(scored["test"]) == len(hypotheses), (len(scored["test"]), len(hypotheses))
            report(path, scored["test"], scored["valid"], rate)


if __name__ == "__main__":
    main()
