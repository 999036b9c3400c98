"""How far a run's text is from its vocabulary, and whether a kept vocabulary should grow.

A model retrained night after night from ``--init-from`` keeps its tokenizer, and so the
words of the first night: new names, products and spellings are read as ``<unk>``. Each run
says the share of its corpus and validation words outside the vocabulary (OOV), and
``--grow-vocab RATE`` learns a new vocabulary from the corpus when that share of the corpus
is at least RATE (0: every run). The model then keeps the rows of the words both
vocabularies share (:mod:`rnnlm_cli.models.vocab_growth`) and starts the new ones fresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

GROWABLE_KINDS = ("word", "char")
"""Tokenizers with a learned vocabulary and an ``<unk>``: byte and sentencepiece (byte
fallback) read every text, so they have no OOVs to grow for."""


def oov_figures(words: int, oov: int | None, oov_types: int | None = None) -> dict[str, Any] | None:
    """The OOV figures of one text (None when the tokenizer does not count them)."""
    if oov is None:
        return None
    return {"words": words, "oov": oov, "oov_rate": oov / max(words, 1), "oov_types": oov_types}


def oov_note(vocabulary: Mapping[str, Any], vocab_size: int) -> str | None:
    """One log line: the words of the corpus and validation text (``vocabulary``'s ``train``
    and ``valid`` figures, each naming its ``text``) outside a vocabulary of ``vocab_size``."""
    parts = []
    for figures in (vocabulary.get("train"), vocabulary.get("valid")):
        if figures is None:
            continue
        part = f"{figures['text']} {100 * figures['oov_rate']:.2f}% of {figures['words']:,}"
        if figures["oov"]:
            distinct = f", {figures['oov_types']:,} distinct" if figures.get("oov_types") is not None else ""
            part += f" ({figures['oov']:,} words{distinct})"
        parts.append(part)
    if not parts:
        return None
    return f"out-of-vocabulary words, read as <unk> by the {vocab_size:,}-entry vocabulary: {'; '.join(parts)}"


@dataclass
class VocabularyGrowth:
    """The choice :func:`rnnlm_cli.text.corpus.encode_corpus` asks for once the corpus is
    counted: ``current`` (the ``--init-from`` model's tokenizer) or the vocabulary learned from
    the corpus, when at least ``grow_at`` of the corpus's words are outside ``current`` and
    the learned vocabulary knows some of them. What it decided is kept for the run's log."""

    current: Any
    grow_at: float
    source: str
    """What ``current`` came from, for the log line."""
    keeps_rows: bool = True
    """Whether a model's rows go with the vocabulary (``--init-from``; not a tokenizer file)."""
    grown: bool = False
    note: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def __call__(self, learned, counts: Mapping[str, int]):
        known = self.current.index
        words = sum(counts.values())
        outside = sum(count for entry, count in counts.items() if entry not in known)
        rate = outside / max(words, 1)
        added = sum(1 for entry in learned.pieces[2:] if entry not in known)
        dropped = sum(1 for entry in self.current.pieces[2:] if entry not in learned.index)
        self.figures = {"oov_rate_before": rate, "vocab_before": self.current.vocab_size,
                        "vocab_after": learned.vocab_size, "added": added, "dropped": dropped}
        before = f"{100 * rate:.2f}% of the corpus's words are outside the vocabulary of {self.source}"
        if rate < self.grow_at or added == 0:
            why = (f"below --grow-vocab {self.grow_at:g}" if rate < self.grow_at
                   else "the corpus adds no word at this --min-count")
            self.note = f"vocabulary kept: {before} ({why})"
            self.figures["vocab_after"] = self.current.vocab_size
            return self.current
        self.grown = True
        self.note = (f"vocabulary grown: {before} (--grow-vocab {self.grow_at:g}); learned "
                     f"{learned.vocab_size:,} entries from the corpus ({added:,} new, {dropped:,} dropped)"
                     + ("; shared entries keep their rows, new ones start fresh" if self.keeps_rows else ""))
        return learned
