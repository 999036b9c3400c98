#!/usr/bin/env python3
"""Generate the sample corpus from a small probabilistic grammar, with its exact entropy.

The grammar, its sampler, its exact entropy rate and its parser live in corpus_grammar.py;
this script draws the train/valid/test splits from it, checks that every sentence has one
derivation, and writes the text files with ENTROPY.json and ENTROPY.md beside them.

Regenerate the shipped files:  python3 sample_data/make_corpus.py --seed 0 --out-dir sample_data
Print only the figures:        python3 sample_data/make_corpus.py --entropy
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import Counter
from pathlib import Path

from corpus_grammar import Entropy, Sample, exact_entropy, parse, sample_sentence


# --- Corpus statistics ---------------------------------------------------------------
def monte_carlo_entropy(samples: list[Sample]) -> tuple[float, float]:
    """(mean -log p / mean tokens, its standard error by the delta method), in nats."""
    a = [-s.logprob for s in samples]
    b = [len(s.tokens) + 1 for s in samples]
    n = len(samples)
    rate = sum(a) / sum(b)
    mean_b = sum(b) / n
    residual_var = sum((x - rate * y) ** 2 for x, y in zip(a, b)) / (n - 1)
    return rate, math.sqrt(residual_var / n) / mean_b


def unigram_entropy(samples: list[Sample]) -> float:
    """Entropy in nats of the empirical token distribution, one <eos> per sentence."""
    counts = Counter(t for s in samples for t in s.tokens)
    counts["<eos>"] = len(samples)
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


def sample_split(seed: int, split: str, target_tokens: int) -> list[Sample]:
    """Sentences from the split's own random stream until target_tokens (incl. <eos>)."""
    rng = random.Random(f"{seed}:{split}")
    samples: list[Sample] = []
    total = 0
    while total < target_tokens:
        samples.append(sample_sentence(rng))
        total += len(samples[-1].tokens) + 1
    return samples


def entropy_report(seed: int, exact: Entropy, splits: dict[str, list[Sample]], unit: str) -> dict:
    """The figures of ENTROPY.json: the exact rate, the Monte Carlo and unigram estimates over
    train, and per split its ``unit`` count (lines), tokens and the true grammar's perplexity."""
    train = splits["train"]
    mc_rate, mc_stderr = monte_carlo_entropy(train)
    unigram = unigram_entropy(train)
    return {
        "seed": seed,
        "exact": {k: round(v, 6) for k, v in vars(exact).items()},
        "monte_carlo_train": {"nats_per_token": round(mc_rate, 6),
                              "stderr": round(mc_stderr, 6),
                              unit: len(train)},
        "unigram_train": {"nats_per_token": round(unigram, 6),
                          "bits_per_token": round(unigram / math.log(2), 6),
                          "perplexity": round(math.exp(unigram), 3)},
        "vocabulary_size": len({t for s in train for t in s.tokens}) + 1,
        "splits": {split: {unit: len(samples),
                           "tokens_with_eos": sum(len(s.tokens) + 1 for s in samples),
                           # The grammar's own cross-entropy on this file: what a perfect
                           # model would score on it (the exact rate plus sampling luck).
                           "true_nats_per_token": round(monte_carlo_entropy(samples)[0], 6),
                           "true_perplexity": round(math.exp(monte_carlo_entropy(samples)[0]), 3)}
                   for split, samples in splits.items()},
    }


def write_corpus(out_dir: Path, seed: int, sizes: dict[str, int]) -> dict:
    """Write <split>.txt for each split, ENTROPY.json and ENTROPY.md; return the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {split: sample_split(seed, split, target) for split, target in sizes.items()}
    for samples in splits.values():
        for s in samples:  # the exact figures hold only if no sentence has two derivations
            if parse(s.tokens)[0] != 1:
                raise RuntimeError(f"ambiguous sentence: {' '.join(s.tokens)}")
    for split, samples in splits.items():
        text = "".join(" ".join(s.tokens) + "\n" for s in samples)
        (out_dir / f"{split}.txt").write_text(text, encoding="utf-8", newline="\n")
    report = entropy_report(seed, exact_entropy(), splits, "sentences")
    (out_dir / "ENTROPY.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "ENTROPY.md").write_text(_entropy_markdown(report), encoding="utf-8")
    return report


def _entropy_markdown(r: dict) -> str:
    e, mc, u = r["exact"], r["monte_carlo_train"], r["unigram_train"]
    rows = "\n".join(f"| {split} | {v['sentences']} | {v['tokens_with_eos']} | {v['true_perplexity']:.2f} |"
                     for split, v in r["splits"].items())
    return f"""# Entropy of the sample corpus (seed {r['seed']})

A token is a word or punctuation mark, plus one `<eos>` per line.

| figure | nats/token | bits/token | perplexity |
|---|---|---|---|
| exact entropy rate of the grammar | {e['nats_per_token']:.4f} | {e['bits_per_token']:.4f} | {e['perplexity']:.2f} |
| Monte Carlo over train.txt | {mc['nats_per_token']:.4f} (s.e. {mc['stderr']:.4f}) | | |
| unigram entropy of train.txt | {u['nats_per_token']:.4f} | {u['bits_per_token']:.4f} | {u['perplexity']:.2f} |

The exact rate is no model's estimate: it is E[-log p(sentence)] = {e['nats_per_sentence']:.4f} nats
divided by E[tokens per sentence] = {e['tokens_per_sentence']:.4f}, both computed from the
grammar by a memoised recursion over its (acyclic) rules. The grammar is unambiguous, so
-log p(sentence) is the sum of -log p(rule) along the sentence's only derivation. Sentences
are i.i.d., so the ratio of expectations is the entropy rate of the token stream.

A language model's test cross-entropy cannot be below the exact rate except by chance
(on test.txt the standard error is about {mc['stderr'] * math.sqrt(r['splits']['train']['sentences'] / r['splits']['test']['sentences']):.3f} nats/token); a unigram model
sits near the unigram entropy. The gap between the two is what context is worth.

| split | sentences | tokens (incl. `<eos>`) | perplexity of the true grammar on the file |
|---|---|---|---|
{rows}

Vocabulary: {r['vocabulary_size']} types including `<eos>`. Regenerate with
`python3 sample_data/make_corpus.py --seed {r['seed']} --out-dir sample_data`.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--train-tokens", type=int, default=350_000)
    parser.add_argument("--valid-tokens", type=int, default=35_000)
    parser.add_argument("--test-tokens", type=int, default=35_000)
    parser.add_argument("--entropy", action="store_true", help="only print the exact figures")
    args = parser.parse_args(argv)
    if args.entropy:
        e = exact_entropy()
        print(f"nats/sentence {e.nats_per_sentence:.6f}  tokens/sentence {e.tokens_per_sentence:.6f}")
        print(f"nats/token {e.nats_per_token:.6f}  bits/token {e.bits_per_token:.6f}  "
              f"perplexity {e.perplexity:.4f}")
        return 0
    sizes = {"train": args.train_tokens, "valid": args.valid_tokens, "test": args.test_tokens}
    report = write_corpus(args.out_dir, args.seed, sizes)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
