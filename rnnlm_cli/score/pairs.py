"""Minimal pairs: does the model prefer the grammatical sentence of each pair?

A pair file (the layout of BLiMP and of Linzen et al.'s agreement sets) has one pair per
line, tab-separated: a grammatical sentence, a minimally different ungrammatical one, then
optionally a category and a distance (a non-negative integer: how far apart the tokens
are that the difference depends on, such as a verb and its subject's noun)::

    the dog near the cats runs .<TAB>the dog near the cats run .<TAB>agreement<TAB>4

Blank lines and lines starting with ``#`` are skipped. Each sentence is scored alone from
a fresh state with its line end, exactly as ``rnnlm eval --context sentence --per-sentence``
scores a line (:class:`rnnlm_cli.score.evaluate.TextScorer`, many sentences per batch).
Words outside a word model's vocabulary are scored as ``<unk>``, as ``--unk`` scores them:
left out, as SRILM leaves them, they would favour whichever sentence has one.

A pair is right when log p(good) > log p(bad), strictly: a tie is wrong, so a model that
cannot tell the two apart (a uniform one, or a pair of equal sentences) scores 0, not 50%.
Accuracy is tallied overall, per category and per distance bucket (powers of two: 1, 2,
3-4, 5-8, ...); a pair without a category or a distance is in no such group.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from rnnlm_cli.errors import DataError, shown
from rnnlm_cli.score.evaluate import TextScorer
from rnnlm_cli.score.scoring_config import ScoringConfig
from rnnlm_cli.score.word_scoring import NgramMix
from rnnlm_cli.text.corpus import input_warnings
from rnnlm_cli.text.reading import DecodeStats, check_readable, display_name, iter_lines, natural

__all__ = ["Bucket", "DistanceTally", "Pair", "PairsResult", "Tally", "distance_bucket", "evaluate_pairs", "read_pairs"]

LAYOUT = "good<TAB>bad[<TAB>category[<TAB>distance]]"
_DISTANCE = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Pair:
    """One minimal pair."""

    good: str
    """The grammatical sentence."""
    bad: str
    """The ungrammatical one."""
    category: str | None = None
    """What the pair tests (agreement, ...); None: no category."""
    distance: int | None = None
    """How far apart the tokens are that the difference depends on; None: not given."""

    def __post_init__(self) -> None:
        if not self.good.strip() or not self.bad.strip():
            raise ValueError("both sentences of a pair need words")
        if self.distance is not None and self.distance < 0:
            raise ValueError(f"a pair's distance is a non-negative integer, got {self.distance}")


def read_pairs(path: str, *, strict: bool = False, stats: DecodeStats | None = None) -> Iterator[Pair]:
    """The pairs of ``path`` (a file, a ``.gz`` file or ``-``), in order.

    A line that is not a pair is a :class:`DataError` naming the file and the line, raised
    when the reading reaches it. ``strict`` and ``stats`` are those of
    :func:`rnnlm_cli.text.reading.iter_lines`. A missing file fails at the call.
    """
    check_readable(path)
    return _read(path, strict, stats)


def _read(path: str, strict: bool, stats: DecodeStats | None) -> Iterator[Pair]:
    name = display_name(path)
    for number, line in enumerate(iter_lines(path, strict=strict, stats=stats), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if not 2 <= len(fields) <= 4:
            raise DataError(f"{name}:{number}: expected {LAYOUT}, got {len(fields)} tab-separated field(s)")
        good, bad = fields[0].strip(), fields[1].strip()
        if not good or not bad:
            raise DataError(f"{name}:{number}: empty {'good' if not good else 'bad'} sentence")
        category = fields[2].strip() if len(fields) > 2 else ""
        distance = fields[3].strip() if len(fields) > 3 else ""
        if distance and not _DISTANCE.fullmatch(distance):
            raise DataError(f"{name}:{number}: distance must be a non-negative integer, got {shown(distance)}")
        yield Pair(good, bad, category or None, natural(distance, f"{name}:{number}", "the distance") if distance else None)


@dataclass(frozen=True, order=True)
class Bucket:
    """Distances ``low`` to ``high``, both included."""

    low: int
    high: int

    @property
    def label(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


def distance_bucket(distance: int) -> Bucket:
    """The bucket of ``distance``: 0 and 1 alone, then up to each power of two (2, 3-4, 5-8, 9-16, ...)."""
    if distance < 0:
        raise ValueError(f"distance must be non-negative, got {distance}")
    if distance <= 1:
        return Bucket(distance, distance)
    high = 1 << (distance - 1).bit_length()  # the least power of two >= distance
    return Bucket(high // 2 + 1, high)


@dataclass
class Tally:
    """Pairs the model got right, of how many."""

    correct: int = 0
    total: int = 0

    def add(self, right: bool) -> None:
        self.correct += right
        self.total += 1

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "total": self.total, "accuracy": self.accuracy}


@dataclass
class DistanceTally(Tally):
    """The tally of one distance bucket: the pairs of distance ``low`` to ``high``."""

    low: int = 0
    high: int = 0

    @property
    def bucket(self) -> Bucket:
        return Bucket(self.low, self.high)

    @property
    def label(self) -> str:
        return self.bucket.label

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.label, "low": self.low, "high": self.high, **super().to_dict()}


@dataclass
class PairsResult:
    """Accuracy on a set of minimal pairs, overall and by group."""

    file: str = ""
    overall: Tally = field(default_factory=Tally)
    by_category: dict[str, Tally] = field(default_factory=dict)
    """In the order the categories first appear."""
    by_distance: list[DistanceTally] = field(default_factory=list)
    """The distance buckets that hold pairs, shortest first."""
    ties: int = 0
    """Pairs whose sentences scored the same (counted wrong)."""
    unknown_pairs: int = 0
    """Pairs with a token the model does not know (scored as ``<unk>``) in either sentence."""
    invalid_lines: int = 0
    replaced_chars: int = 0
    control_chars: int = 0

    def add(self, pair: Pair, good_log10: float, bad_log10: float) -> None:
        """Count ``pair`` given its sentences' scores."""
        right = good_log10 > bad_log10
        self.ties += good_log10 == bad_log10
        self.overall.add(right)
        if pair.category is not None:
            self.by_category.setdefault(pair.category, Tally()).add(right)
        if pair.distance is not None:
            self._tally_of(distance_bucket(pair.distance)).add(right)

    def _tally_of(self, bucket: Bucket) -> DistanceTally:
        for tally in self.by_distance:  # a few dozen buckets at most: 2**30 is a long sentence
            if tally.bucket == bucket:
                return tally
        tally = DistanceTally(low=bucket.low, high=bucket.high)
        self.by_distance.append(tally)
        self.by_distance.sort(key=lambda t: t.low)
        return tally

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "overall": self.overall.to_dict(),
            "by_category": {name: tally.to_dict() for name, tally in self.by_category.items()},
            "by_distance": [tally.to_dict() for tally in self.by_distance],
            "ties": self.ties,
            "unknown_pairs": self.unknown_pairs,
        }

    def warnings(self) -> list[str]:
        """One line per kind of surprise reading the pairs found, for the caller to show."""
        notes = input_warnings(self.file, invalid_lines=self.invalid_lines, replaced_chars=self.replaced_chars,
                               control_chars=self.control_chars)
        if self.unknown_pairs:
            notes.append(f"{self.file}: {self.unknown_pairs} pair(s) with words or characters outside the "
                         "model's vocabulary, scored as <unk>")
        return notes


BATCH_PAIRS = 512
"""Pairs read before their sentences are scored together: enough for full batches of short
sentences, few enough that a progress bar moves."""


def evaluate_pairs(
    model,
    tokenizer,
    pairs: str | Iterable[Pair],
    device,
    config: ScoringConfig = ScoringConfig(),
    *,
    ngram=None,
    strict: bool = False,
    on_pair: Callable[[Pair, float, float], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> PairsResult:
    """Score every pair of ``pairs`` (a pair file's path, ``-`` for stdin, or the pairs
    themselves) and tally which sentence ``model`` prefers.

    ``config`` gives the precision and, with ``ngram`` (:class:`rnnlm_cli.score.arpa.ArpaModel`),
    the mix weight; every sentence is scored alone, so its context, cache and dynamic
    evaluation do not apply, and OOV words are scored as ``<unk>`` whatever its ``unk``.
    ``on_pair(pair, good_log10, bad_log10)`` gets each pair and its sentences' log10 scores, in
    input order; ``on_progress(count)`` the number of pairs scored so far after each batch.
    """
    if config.cache or config.dynamic:
        raise ValueError("pairs are scored one sentence at a time: the cache and dynamic evaluation do not apply")
    stats = DecodeStats()
    if isinstance(pairs, str):
        result = PairsResult(file=display_name(pairs))
        pairs = read_pairs(pairs, strict=strict, stats=stats)
    else:
        result = PairsResult()
    with config.precision(device):
        mix = None if ngram is None else NgramMix(ngram, config.mix_weight)
        scorer = TextScorer(model, tokenizer, device, unk=True, mix=mix)
        batch: list[Pair] = []
        for pair in pairs:
            batch.append(pair)
            if len(batch) == BATCH_PAIRS:
                _score(scorer, tokenizer, batch, result, on_pair, on_progress)
                batch = []
        if batch:
            _score(scorer, tokenizer, batch, result, on_pair, on_progress)
    result.invalid_lines, result.replaced_chars = stats.invalid_lines, stats.replaced_chars
    result.control_chars = stats.control_chars
    if result.overall.total == 0:
        raise DataError(f"{result.file or 'pairs'}: no pairs to score (empty input)")
    return result


def _score(scorer: TextScorer, tokenizer, batch: list[Pair], result: PairsResult,
           on_pair: Callable[[Pair, float, float], None] | None, on_progress: Callable[[int], None] | None) -> None:
    totals = scorer.score([text for pair in batch for text in (pair.good, pair.bad)])
    for index, pair in enumerate(batch):
        good, bad = (_log10(t) for t in totals[2 * index: 2 * index + 2])
        result.add(pair, good, bad)
        if on_pair is not None:
            on_pair(pair, good, bad)
        result.unknown_pairs += _has_unknown(tokenizer, pair.good) or _has_unknown(tokenizer, pair.bad)
    if on_progress is not None:
        on_progress(result.overall.total)


def _log10(totals) -> float:
    # Totals leave a zero-probability word (possible only in a mix) out of logprob, as
    # SRILM does; the sentence's probability is then zero.
    return -math.inf if totals.zeroprobs else totals.logprob


def _has_unknown(tokenizer, text: str) -> bool:
    return tokenizer.unk_id is not None and tokenizer.unk_id in tokenizer.encode(text)
