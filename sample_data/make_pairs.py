#!/usr/bin/env python3
"""Generate minimal pairs from the sample corpus' grammar, for ``rnnlm eval --pairs``.

Each pair is a sentence sampled from the grammar (corpus_grammar.py) and a copy with one
token changed so that the grammar rejects it. The sampled derivation says which token
depends on which, so every pair also records how far apart the two are:

* ``agreement``: a finite verb in the other number (runs/run, is/are, does/do) than its
  subject; the distance is the verb's position minus that of the subject's head noun. The
  subjects are those of declarative clauses (NP VP), of subject relative clauses (the noun
  the clause modifies: "the dog that runs") and of object relative clauses ("that the cat sees").
* ``question``: the auxiliary or copula opening a question in the other number; the
  distance is the position of the noun it agrees with minus its own.
* ``brackets``: a closing ")" written "''" or a closing "''" written ")"; the distance is
  the number of tokens between the opening bracket and the closing one.

Every pair is checked with the grammar's own parser: the sentence must have exactly one
derivation and its changed copy none, else the pair is dropped. Agreement pairs are
collected up to a quota per distance (1 to --max-distance), so long distances, rare in the
corpus, are as well represented as short ones; bracket pairs likewise, within their total.
Sentences come from their own random stream ("pairs:<seed>"), not from the corpus splits'
(a short sentence may still coincide with one of train.txt).

Regenerate the shipped file:  python3 sample_data/make_pairs.py --seed 0 --out sample_data/pairs.tsv
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from corpus_grammar import AUX, COPULA, INTRANSITIVE, SENTENTIAL, TRANSITIVE, parse, sample_sentence

COMMAND = "python3 sample_data/make_pairs.py --seed 0 --out sample_data/pairs.tsv"
CATEGORIES = ("agreement", "question", "brackets")


def _counterparts() -> dict[str, str]:
    """Every finite verb form mapped to its form in the other number."""
    other: dict[str, str] = {}
    for pair in [*INTRANSITIVE, *TRANSITIVE, *SENTENTIAL, f"{AUX['sg']}/{AUX['pl']}",
                 f"{COPULA['sg']}/{COPULA['pl']}"]:
        sg, pl = pair.split("/")
        other[sg], other[pl] = pl, sg
    return other


OTHER_NUMBER = _counterparts()
OTHER_CLOSER = {")": "''", "''": ")"}


@dataclass
class Node:
    """A derivation node with the token positions it spans, ``[start, end)``."""

    symbol: str
    start: int
    end: int
    children: list  # Node or str (a terminal)

    def child(self, prefix: str) -> "Node":
        """The one child whose symbol starts with ``prefix`` (a kind such as "N." or "VP.")."""
        (found,) = [c for c in self.children if isinstance(c, Node) and c.symbol.startswith(prefix)]
        return found

    def terminal_positions(self) -> list[tuple[int, str]]:
        """(position, token) of the terminals that are this node's own children."""
        out, position = [], self.start
        for c in self.children:
            if isinstance(c, Node):
                position = c.end
            else:
                out.append((position, c))
                position += 1
        return out


def positioned(tree, start: int = 0) -> Node:
    """The sampler's ``(symbol, children)`` tree with token positions."""
    symbol, children = tree
    out, position = [], start
    for c in children:
        if isinstance(c, str):
            out.append(c)
            position += 1
        else:
            node = positioned(c, position)
            out.append(node)
            position = node.end
    return Node(symbol, start, position, out)


def walk(node: Node):
    yield node
    for c in node.children:
        if isinstance(c, Node):
            yield from walk(c)


@dataclass(frozen=True)
class Site:
    """A token that can be changed to break the sentence, and its distance."""

    category: str
    position: int
    distance: int


def sites(tree: Node, tokens: list[str]) -> list[Site]:
    """Every place in one derivation where one of the three categories can be made."""
    found = []
    for node in walk(tree):
        kind = node.symbol.split(".")[0]
        if kind == "DECL":  # DECL.d -> NP.n.d VP.n.d: the verb is the VP's first token
            noun = node.child("NP.").child("N.")
            verb = node.child("VP.").start
            found.append(Site("agreement", verb, verb - noun.start))
        elif kind == "RCO":  # RCO.d -> that NP.n.(d+1) TV.n
            noun = node.child("NP.").child("N.")
            verb = node.child("TV.").start
            found.append(Site("agreement", verb, verb - noun.start))
        elif kind == "NP":  # NP.n.d -> DET ADJS N POST; POST may hold "( RCS )" or RCS
            noun = node.child("N.")
            post = node.child("POST.")
            for clause in (c for c in post.children if isinstance(c, Node) and c.symbol.startswith("RCS.")):
                verb = clause.child("VP.").start  # RCS -> that VP.n
                found.append(Site("agreement", verb, verb - noun.start))
        elif kind == "QUES":  # QUES -> does/do/is/are NP ...
            noun = node.child("NP.").child("N.")
            found.append(Site("question", node.start, noun.start - node.start))
        if kind in ("S", "POST"):
            opened = None
            for position, token in node.terminal_positions():
                if token in ("(", "``"):
                    opened = position
                elif token in OTHER_CLOSER and opened is not None:
                    found.append(Site("brackets", position, position - opened - 1))
                    opened = None
    for site in found:
        # The definitions above pick only these tokens; a changed grammar would show here.
        table = OTHER_CLOSER if site.category == "brackets" else OTHER_NUMBER
        if tokens[site.position] not in table:
            raise RuntimeError(f"no counterpart for {tokens[site.position]!r} in {' '.join(tokens)}")
    return found


def changed(tokens: list[str], site: Site) -> list[str]:
    table = OTHER_CLOSER if site.category == "brackets" else OTHER_NUMBER
    return tokens[:site.position] + [table[tokens[site.position]]] + tokens[site.position + 1:]


@dataclass(frozen=True)
class Quotas:
    per_distance: int = 40
    """Agreement pairs per distance."""
    max_distance: int = 15
    """Agreement pairs at distances 1 to this."""
    questions: int = 300
    brackets: int = 300
    brackets_per_distance: int = 30
    max_sentences: int = 400_000
    """Stop sampling here even if a quota is not filled."""


def make_pairs(seed: int, quotas: Quotas = Quotas()) -> list[tuple[str, str, str, int]]:
    """``(good, bad, category, distance)`` rows, agreement by distance first, then the others."""
    rng = random.Random(f"pairs:{seed}")
    taken: dict[str, list] = {category: [] for category in CATEGORIES}
    by_distance: Counter = Counter()
    seen: set[tuple[str, str]] = set()

    def room(site: Site) -> bool:
        if site.category == "agreement":
            return 1 <= site.distance <= quotas.max_distance and by_distance[site.category, site.distance] < quotas.per_distance
        if site.category == "question":
            return len(taken["question"]) < quotas.questions
        return (len(taken["brackets"]) < quotas.brackets
                and by_distance[site.category, site.distance] < quotas.brackets_per_distance)

    def full() -> bool:
        return (all(by_distance["agreement", d] >= quotas.per_distance
                    for d in range(1, quotas.max_distance + 1))
                and len(taken["question"]) >= quotas.questions and len(taken["brackets"]) >= quotas.brackets)

    for _ in range(quotas.max_sentences):
        if full():
            break
        sample = sample_sentence(rng)
        tree = positioned(sample.tree)
        # One pair per category per sentence: the longest distance still wanted, as the
        # long ones are the scarce ones.
        for category in CATEGORIES:
            wanted = [s for s in sites(tree, sample.tokens) if s.category == category and room(s)]
            if not wanted:
                continue
            site = max(wanted, key=lambda s: (s.distance, -s.position))
            good, bad = " ".join(sample.tokens), " ".join(changed(sample.tokens, site))
            if (good, bad) in seen:
                continue
            if parse(sample.tokens)[0] != 1 or parse(bad.split())[0] != 0:
                continue  # the grammar's own labels decide; none is expected to fail
            seen.add((good, bad))
            taken[category].append((good, bad, category, site.distance))
            by_distance[site.category, site.distance] += 1
    agreement = sorted(taken["agreement"], key=lambda row: row[3])  # stable: sampling order within a distance
    return agreement + taken["question"] + taken["brackets"]


def write_pairs(path: Path, rows: list[tuple[str, str, str, int]]) -> None:
    header = f"# good\tbad\tcategory\tdistance; made by: {COMMAND}\n"
    text = header + "".join(f"{good}\t{bad}\t{category}\t{distance}\n" for good, bad, category, distance in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "pairs.tsv")
    parser.add_argument("--per-distance", type=int, default=Quotas.per_distance)
    parser.add_argument("--max-distance", type=int, default=Quotas.max_distance)
    parser.add_argument("--questions", type=int, default=Quotas.questions)
    parser.add_argument("--brackets", type=int, default=Quotas.brackets)
    args = parser.parse_args(argv)
    quotas = Quotas(per_distance=args.per_distance, max_distance=args.max_distance, questions=args.questions,
                    brackets=args.brackets)
    rows = make_pairs(args.seed, quotas)
    write_pairs(args.out, rows)
    counts = Counter(row[2] for row in rows)
    agreement = Counter(row[3] for row in rows if row[2] == "agreement")
    print(f"{args.out}: {len(rows)} pairs: " + ", ".join(f"{c} {counts[c]}" for c in CATEGORIES))
    print("agreement by distance: " + " ".join(f"{d}:{agreement[d]}" for d in sorted(agreement)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
