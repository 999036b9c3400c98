"""Stories: the sample grammar's sentences framed so that a name must be carried far.

Each line is one story. It opens with a name and closes with the same name, after one to
:data:`MAX_ITEMS` items; an item is a sentence of the sample grammar (corpus_grammar.py) or,
in a top-level story, a shorter story of its own, nested one level::

    story of anna : the dog runs . story of leo : few cats sleep . end of leo . is the king sad ? end of anna .

Nothing between the two names says which name opened the story, so predicting the closing
one means remembering the opening one across everything in between: 8 to 300 tokens, and
across another name when a story is nested inside. The sentences keep the local structure
(agreement, brackets, questions) of the sample corpus, so perplexity still rewards a good
local model.

The stories form a probabilistic grammar in the same form as the sentences' (a dict of
rules, acyclic, unambiguous), built on top of it, so corpus_grammar's sampler, exact
entropy and parser serve it unchanged: one rule per name makes the two names agree, and one
rule per item count unrolls the list. The names occur nowhere else, and each sentence ends
in "." or "?" with nothing but a sentence, a story or "end" after it, so each line has one
derivation.

Standard library only; make_stories.py turns it into the shipped files.
"""

from __future__ import annotations

from corpus_grammar import GRAMMAR, Grammar, _reachable

NAMES = """anna boris clara david elena felix greta hugo iris jonas karla leo mona nils
olga paul""".split()
"""The names a story opens and closes with, equally likely: a model that forgets the opening
one can do no better than chance (1 in 16) at the closing one."""
MAX_ITEMS = 18
"""Items in a top-level story: n in 1..MAX_ITEMS with p(n) proportional to :func:`item_weight`."""
NESTED_MAX_ITEMS = 6
"""Items in a nested story (p(n) proportional to :func:`item_weight` as well)."""


def item_weight(n: int) -> float:
    """Weight of a story of n items: 1/n². Six in ten stories hold one sentence, the short
    recalls from which a model learns to keep a name at all; one in twenty holds ten or more,
    200 tokens and beyond. (With 1/n, where every doubling of the distance is as common as
    the one before, no cell learnt to recall a name in 3 minutes: see stories/README.md.)"""
    return 1.0 / n ** 2


NESTED_SHARE = 0.12
"""Chance that an item of a top-level story is a nested story rather than a sentence."""
START = "STORY.0"


def _items_rules(item: str, most: int) -> list[tuple[float, tuple[str, ...]]]:
    weights = [item_weight(n) for n in range(1, most + 1)]
    total = sum(weights)
    return [(w / total, (item,) * n) for n, w in zip(range(1, most + 1), weights)]


def build_story_grammar() -> Grammar:
    """The sentence grammar plus the story rules; start symbol :data:`START`."""
    g: Grammar = dict(GRAMMAR)
    for depth, body in ((0, "ITEMS.0"), (1, "ITEMS.1")):
        g[f"STORY.{depth}"] = [(1.0 / len(NAMES), ("story", "of", name, ":", body, "end", "of", name, "."))
                               for name in NAMES]
    g["ITEMS.0"] = _items_rules("ITEM.0", MAX_ITEMS)
    g["ITEMS.1"] = _items_rules("S", NESTED_MAX_ITEMS)
    g["ITEM.0"] = [(1.0 - NESTED_SHARE, ("S",)), (NESTED_SHARE, ("STORY.1",))]
    words = {token for rules in GRAMMAR.values() for _, rhs in rules for token in rhs}
    if words & {*NAMES, "story", "end", "of"}:
        raise ValueError("the story words must not occur in the sentences, or a line could parse two ways")
    return _reachable(g, START)


STORY_GRAMMAR = build_story_grammar()
