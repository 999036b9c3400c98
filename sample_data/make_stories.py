#!/usr/bin/env python3
"""Generate the stories corpus (story_grammar.py): splits, exact entropy and minimal pairs.

The corpus where gradients must travel far: each line is a story whose closing name repeats
its opening one, 10 to 400 tokens later. This script draws the train/valid/test splits from
the grammar, checks that every line has one derivation, and writes them with ENTROPY.json,
ENTROPY.md and pairs.tsv into sample_data/stories/.

Each pair is a story sampled from its own random stream and a copy whose closing name is
another name (the grammar rejects it; its parser checks both). The distance is the closing
name's position minus the opening one's. ``recall`` pairs close a story with no other story
inside; ``nested`` pairs close a top-level story after a nested one has opened and closed
in between, so the first name had to survive a second being stored. Pairs are collected up
to a quota per category and distance bucket (9-16, 17-32, ... 257-512, the buckets
``rnnlm eval --pairs`` reports), so the long distances, rare in the corpus, are as well
represented as the short ones.

Regenerate the shipped files:  python3 sample_data/make_stories.py --seed 0
Print only the figures:        python3 sample_data/make_stories.py --entropy
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

from corpus_grammar import Sample, exact_entropy, parse, sample_from
from make_corpus import entropy_report
from story_grammar import NAMES, START, STORY_GRAMMAR

COMMAND = "python3 sample_data/make_stories.py --seed 0"
OUT_DIR = Path(__file__).resolve().parent / "stories"
BUCKETS = ((9, 16), (17, 32), (33, 64), (65, 128), (129, 256), (257, 512))
"""Distance buckets of the pairs, as ``rnnlm eval --pairs`` groups them (ending at powers of two)."""
PAIRS_PER_BUCKET = 60
CATEGORIES = ("recall", "nested")
MAX_STORIES_FOR_PAIRS = 100_000
"""Stories drawn at most while filling the quotas; a bucket the grammar makes too rare keeps
what it has (a story without a nested one seldom spans 257 tokens)."""


def sample_split(seed: int, split: str, target_tokens: int) -> list[Sample]:
    """Stories from the split's own random stream until target_tokens (incl. <eos>)."""
    rng = random.Random(f"stories:{seed}:{split}")
    samples: list[Sample] = []
    total = 0
    while total < target_tokens:
        samples.append(sample_from(STORY_GRAMMAR, START, rng))
        total += len(samples[-1].tokens) + 1
    return samples


def name_spans(tokens: list[str]) -> list[tuple[int, int, bool]]:
    """(opening name's position, closing name's position, whether another story lies between)
    for each story in a line, outermost last. "story" and "end" occur nowhere else."""
    spans, stack = [], []
    for i, token in enumerate(tokens):
        if token == "story":
            stack.append((i + 2, False))
        elif token == "end":
            opened, holds = stack.pop()
            spans.append((opened, i + 2, holds))
            if stack:
                stack[-1] = (stack[-1][0], True)
    return spans


def bucket_of(distance: int) -> tuple[int, int] | None:
    return next((b for b in BUCKETS if b[0] <= distance <= b[1]), None)


def make_pairs(seed: int, per_bucket: int = PAIRS_PER_BUCKET,
               draws: int = MAX_STORIES_FOR_PAIRS) -> list[tuple[str, str, str, int]]:
    """(good, bad, category, distance) rows, each checked by the grammar's parser, from at most
    ``draws`` stories."""
    rng = random.Random(f"stories-pairs:{seed}")
    taken: dict[tuple[str, tuple[int, int]], list[tuple[str, str, str, int]]] = {}
    for _ in range(draws):
        if all(len(taken.get((c, b), [])) >= per_bucket for c in CATEGORIES for b in BUCKETS):
            break
        tokens = sample_from(STORY_GRAMMAR, START, rng).tokens
        for opened, closed, holds in sorted(name_spans(tokens), key=lambda s: s[0] - s[1]):
            category = "nested" if holds else "recall"
            key = (category, bucket_of(closed - opened))
            if key[1] is None or len(taken.setdefault(key, [])) >= per_bucket:
                continue
            bad = list(tokens)
            bad[closed] = rng.choice([name for name in NAMES if name != tokens[closed]])
            if parse(tokens, STORY_GRAMMAR, START)[0] != 1 or parse(bad, STORY_GRAMMAR, START)[0] != 0:
                continue  # the grammar's own parser decides; none is expected to fail
            taken[key].append((" ".join(tokens), " ".join(bad), category, closed - opened))
            break  # one pair per story: no story shows up twice
    return [row for c in CATEGORIES for b in BUCKETS for row in taken.get((c, b), [])]


def write_corpus(out_dir: Path, seed: int, sizes: dict[str, int]) -> dict:
    """Write <split>.txt for each split, ENTROPY.json and ENTROPY.md; return the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {split: sample_split(seed, split, target) for split, target in sizes.items()}
    for samples in splits.values():
        for s in samples:  # the exact figures hold only if no line has two derivations
            if parse(s.tokens, STORY_GRAMMAR, START)[0] != 1:
                raise RuntimeError(f"ambiguous story: {' '.join(s.tokens)}")
    for split, samples in splits.items():
        text = "".join(" ".join(s.tokens) + "\n" for s in samples)
        (out_dir / f"{split}.txt").write_text(text, encoding="utf-8", newline="\n")
    report = entropy_report(seed, exact_entropy(STORY_GRAMMAR, START), splits, "stories")
    distances = sorted(closed - opened for s in splits["train"] for opened, closed, _ in name_spans(s.tokens))
    report["name_distance_train"] = {
        "names": len(distances), "median": distances[len(distances) // 2],
        "share_over_32": round(sum(d > 32 for d in distances) / len(distances), 4),
        "share_over_128": round(sum(d > 128 for d in distances) / len(distances), 4),
        "max": distances[-1]}
    (out_dir / "ENTROPY.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "ENTROPY.md").write_text(_entropy_markdown(report), encoding="utf-8")
    return report


def _entropy_markdown(r: dict) -> str:
    e, mc, u, d = r["exact"], r["monte_carlo_train"], r["unigram_train"], r["name_distance_train"]
    rows = "\n".join(f"| {split} | {v['stories']} | {v['tokens_with_eos']} | {v['true_perplexity']:.2f} |"
                     for split, v in r["splits"].items())
    recall = math.log(len(NAMES))
    return f"""# Entropy of the stories corpus (seed {r['seed']})

A token is a word or punctuation mark, plus one `<eos>` per line (one story).

| figure | nats/token | bits/token | perplexity |
|---|---|---|---|
| exact entropy rate of the grammar | {e['nats_per_token']:.4f} | {e['bits_per_token']:.4f} | {e['perplexity']:.2f} |
| Monte Carlo over train.txt | {mc['nats_per_token']:.4f} (s.e. {mc['stderr']:.4f}) | | |
| unigram entropy of train.txt | {u['nats_per_token']:.4f} | {u['bits_per_token']:.4f} | {u['perplexity']:.2f} |

The exact rate is E[-log p(story)] = {e['nats_per_sentence']:.4f} nats divided by E[tokens per
story] = {e['tokens_per_sentence']:.4f}, both computed from the grammar by a memoised recursion
over its (acyclic) rules; every story has one derivation, so -log p(story) is the sum of
-log p(rule) along it. A model that forgets each opening name pays log {len(NAMES)} = {recall:.4f}
nats at its closing name instead of 0.

Distances between a story's two names in train.txt ({d['names']} names): median {d['median']},
{d['share_over_32']:.0%} over 32 tokens, {d['share_over_128']:.0%} over 128, longest {d['max']}.

| split | stories | tokens (incl. `<eos>`) | perplexity of the true grammar on the file |
|---|---|---|---|
{rows}

Vocabulary: {r['vocabulary_size']} types including `<eos>`. Regenerate with `{COMMAND}`.
"""


def write_pairs(path: Path, rows: list[tuple[str, str, str, int]]) -> None:
    header = f"# good\tbad\tcategory\tdistance; made by: {COMMAND}\n"
    text = header + "".join(f"{good}\t{bad}\t{category}\t{distance}\n" for good, bad, category, distance in rows)
    path.write_text(text, encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--train-tokens", type=int, default=400_000)
    parser.add_argument("--valid-tokens", type=int, default=40_000)
    parser.add_argument("--test-tokens", type=int, default=40_000)
    parser.add_argument("--pairs-per-bucket", type=int, default=PAIRS_PER_BUCKET)
    parser.add_argument("--pairs-draws", type=int, default=MAX_STORIES_FOR_PAIRS,
                        help="stories drawn at most to fill the pair quotas")
    parser.add_argument("--entropy", action="store_true", help="only print the exact figures")
    args = parser.parse_args(argv)
    if args.entropy:
        e = exact_entropy(STORY_GRAMMAR, START)
        print(f"nats/story {e.nats_per_sentence:.6f}  tokens/story {e.tokens_per_sentence:.6f}")
        print(f"nats/token {e.nats_per_token:.6f}  bits/token {e.bits_per_token:.6f}  perplexity {e.perplexity:.4f}")
        return 0
    sizes = {"train": args.train_tokens, "valid": args.valid_tokens, "test": args.test_tokens}
    report = write_corpus(args.out_dir, args.seed, sizes)
    rows = make_pairs(args.seed, args.pairs_per_bucket, args.pairs_draws)
    write_pairs(args.out_dir / "pairs.tsv", rows)
    counts = {c: sum(r[2] == c for r in rows) for c in CATEGORIES}
    print(json.dumps(report["exact"]), file=sys.stderr)
    print(f"{args.out_dir / 'pairs.tsv'}: {len(rows)} pairs: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
