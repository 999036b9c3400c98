#!/usr/bin/env python3
"""Simulated speech-recognition n-best lists from the test split, for tuning and rescoring.

Each utterance's reference is a sentence of sample_data/test.txt (the models never saw it).
A decoder's list is imitated: CANDIDATES variants of the reference, each made by 0 to 3
random edits, are given an acoustic cost, and the LIST cheapest, ranked by cost, are the
list. An edit is one of

  - a substitution by a word that sounds alike: a word of the vocabulary within spelling
    distance 2 (the singular or plural of a noun or verb, "hear"/"hears", "cat"/"hat"...);
  - the deletion of a word;
  - the insertion of a short word (a determiner, "that", "and"...).

In MISHEARD of the utterances every variant has an edit: the reference is not on the list.
The acoustic cost of a variant is the sum of its edits' costs (a look-alike substitution
is cheap, CONFUSION; a deletion or insertion dearer, GAP), Gaussian noise of NOISE per
variant (what the acoustics cannot tell), and -SHORT per word: an acoustic model alone
prefers fewer words, as a decoder without its word insertion penalty does. Costs are natural
logs, Kaldi's ``nbest-to-linear`` ac-cost layout ('UTT-N cost').

Nothing in the costs knows grammar; the language model's job is to tell "the dogs run" from
"the dogs runs", which sound alike here.

Writes, for dev (test.txt lines 1-300) and test (lines 301-600):
  <split>.text    'UTT w1 ... wN'    the references (Kaldi's data/<split>/text)
  <split>.nbest   'UTT-N w1 ... wN'  the lists, ranked by acoustic cost
  <split>.cost    'UTT-N cost'       the acoustic costs

Regenerate the shipped files:  python3 sample_data/make_nbest.py --out-dir sample_data/nbest --seed 0
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

CANDIDATES = 40
LIST = 10
CONFUSION = 0.3
GAP = 1.5
NOISE = 5.0
SHORT = 0.3
MISHEARD = 0.15
SPLITS = {"dev": (0, 300), "test": (300, 600)}
SHORT_WORDS = ("the", "a", "that", "and", "some", "this", "is", ".")


def distance(a: str, b: str) -> int:
    """Levenshtein distance between two spellings."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def look_alikes(vocabulary: list[str]) -> dict[str, list[str]]:
    """Each word's look-alikes: the words within spelling distance 2, both at least 3 letters long."""
    alikes: dict[str, list[str]] = {}
    for word in vocabulary:
        if len(word) < 3:
            continue
        found = [other for other in vocabulary if other != word and len(other) >= 3 and distance(word, other) <= 2]
        if found:
            alikes[word] = found
    return alikes


def variant(words: list[str], alikes: dict[str, list[str]], rng: random.Random,
            least: int = 0) -> tuple[list[str], float]:
    """A variant of ``words`` by ``least`` to 3 edits, and the edits' acoustic cost."""
    words, cost = list(words), 0.0
    for _ in range(max(least, rng.choice((0, 1, 1, 2, 2, 2, 3, 3)))):
        kind = rng.random()
        swappable = [i for i, word in enumerate(words) if word in alikes]
        if kind < 0.7 and swappable:
            i = rng.choice(swappable)
            words[i] = rng.choice(alikes[words[i]])
            cost += CONFUSION
        elif kind < 0.85 and len(words) > 2:
            del words[rng.randrange(len(words))]
            cost += GAP
        else:
            words.insert(rng.randrange(len(words) + 1), rng.choice(SHORT_WORDS))
            cost += GAP
    return words, cost


def nbest(reference: list[str], alikes: dict[str, list[str]], rng: random.Random) -> list[tuple[list[str], float]]:
    """The list of one utterance: ``(words, acoustic cost)``, cheapest first, distinct texts."""
    found: dict[str, tuple[list[str], float]] = {}
    # Some utterances were misheard beyond recovery: no variant is the reference.
    least = 1 if rng.random() < MISHEARD else 0
    for _ in range(CANDIDATES):
        words, edits = variant(reference, alikes, rng, least)
        cost = 2.0 * len(reference) + edits + rng.gauss(0.0, NOISE) - SHORT * len(words)
        text = " ".join(words)
        if text not in found or cost < found[text][1]:
            found[text] = (words, cost)
    return sorted(found.values(), key=lambda item: item[1])[:LIST]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "nbest")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    here = Path(__file__).parent
    train = (here / "train.txt").read_text(encoding="utf-8").split()
    vocabulary = sorted(set(train))
    alikes = look_alikes(vocabulary)
    sentences = [line.split() for line in (here / "test.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(args.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for split, (start, stop) in SPLITS.items():
        text, lists, costs = [], [], []
        for number, reference in enumerate(sentences[start:stop], start=1):
            utterance = f"{split}{number:04d}"
            text.append(f"{utterance} {' '.join(reference)}\n")
            for rank, (words, cost) in enumerate(nbest(reference, alikes, rng), start=1):
                lists.append(f"{utterance}-{rank} {' '.join(words)}\n")
                costs.append(f"{utterance}-{rank} {cost:.4f}\n")
        (args.out_dir / f"{split}.text").write_text("".join(text), encoding="utf-8")
        (args.out_dir / f"{split}.nbest").write_text("".join(lists), encoding="utf-8")
        (args.out_dir / f"{split}.cost").write_text("".join(costs), encoding="utf-8")


if __name__ == "__main__":
    main()
