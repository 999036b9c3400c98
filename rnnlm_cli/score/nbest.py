"""N-best lists from speech recognition or translation: reading, checking, rescoring.

Two input layouts are read, one hypothesis per line:

``srilm``
    SRILM's n-best rescoring layout with log10 scores, ``[UTT] ACOUSTIC LM NWORDS w1 ... wN``.
    The first line decides whether the utterance-id column is there: with it, field 4
    is an integer equal to the number of fields after it and fields 2 and 3 are numbers;
    without it, field 3 is such an integer and fields 1 and 2 are numbers. A first line
    that fits both readings (``-5 -3 3 2 x y``: utterance ``-5`` with words ``x y``, or
    no id with words ``2 x y``) is read with the id; this is rare, as an id is seldom a
    number. Every later line must fit the same reading. Without ids the whole input is
    one list whose id is ``"1"``.
``kaldi``
    ``UTT-N w1 ... wN``, as Kaldi's ``nbest-to-linear`` and ``int2sym.pl`` write them: the
    utterance is everything before the last ``-`` and N (1, 2, 3 ... without leading
    zeros) the hypothesis' rank. A line with only a key is an empty hypothesis. Acoustic
    scores come from a separate table (:func:`read_score_table`); without one they are 0.

``auto`` takes ``srilm`` when a reading of it fits the first line and ``kaldi`` when
the first field is a key. Lines of one utterance must be consecutive, and within a
Kaldi utterance ranks must run 1, 2, 3 ... in order. Blank lines are skipped. An input
without a hypothesis is an error: an empty list in a pipeline means the decoder before it
failed, and an empty rescored list would pass that failure on as "no words".

Scores must be log10 probabilities: ``+inf`` is refused, ``-inf`` (probability zero) kept.
A hypothesis of more than :data:`LONG_TEXT` characters keeps its words as one text
(:class:`WordRun`), never as a tuple of words, so a line of megabytes costs about its size.

Rescoring follows SRILM's ``rescore-reweight``: all scores are log10, higher is better,
and ``total = acoustic + lm_weight * lm + word_penalty * words``.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from rnnlm_cli.errors import DataError, UsageError
from rnnlm_cli.text.reading import MAX_DIGITS, DecodeStats, check_readable, display_name, iter_lines, natural
from rnnlm_cli.score.scoring_config import NBEST_FORMATS as FORMATS
from rnnlm_cli.units import LN10

# Layouts a first line can decide on; "auto" is not one of them.
_SRILM_ID = "srilm with utterance ids"
_SRILM_PLAIN = "srilm without utterance ids"
_KALDI = "kaldi"
_USAGE = {
    _SRILM_ID: "'UTT ACOUSTIC LM NWORDS w1 ... wN'",
    _SRILM_PLAIN: "'ACOUSTIC LM NWORDS w1 ... wN'",
    _KALDI: "'UTT-N w1 ... wN'",
}
_PLAIN_UTTERANCE = "1"

# ASCII only: Python's float() and int() would also take "1_000", "nan" and non-ASCII digits.
_NUMBER = re.compile(r"[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|inf(?:inity)?)",
                     re.IGNORECASE)
_COUNT = re.compile(r"[0-9]+")
_KEY = re.compile(r"(.+)-([1-9][0-9]*)")
_WORD = re.compile(r"\S+")
_SPACES = re.compile(r"\s+")  # the whitespace str.split() splits at
_ODD_SPACE = re.compile(r"[^\S ]| {2}")  # whitespace other than single spaces
LONG_TEXT = 1 << 16
"""Characters beyond which a hypothesis' words are kept as one text (:class:`WordRun`)."""


class WordRun:
    """The words of a long hypothesis as one text, single spaces between them.

    A tuple of a million short words costs some 60 bytes a word; this costs one byte
    (ASCII) or a few (other text) a character. Iterating yields the words one at a time.
    """

    __slots__ = ("text", "count")

    def __init__(self, text: str, count: int) -> None:
        self.text = text
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[str]:
        return (match.group() for match in _WORD.finditer(self.text))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, WordRun):
            return self.text == other.text
        return isinstance(other, tuple) and len(other) == self.count and " ".join(other) == self.text

    __hash__ = None  # type: ignore[assignment]


def _squeeze(text: str) -> str:
    """``" ".join(text.split())``, without a list of the words: a window at a time."""
    if not _ODD_SPACE.search(text):
        return text.rstrip()
    out = io.StringIO()
    start, after_space = 0, False
    while start < len(text):
        stop = start + LONG_TEXT
        if stop < len(text):
            stop = max(text.rfind(" ", start, stop), text.rfind("\t", start, stop), start) + 1
        window = text[start:stop]
        if after_space:
            window = window.lstrip()
        out.write(_SPACES.sub(" ", window))
        after_space = window[-1:].isspace() if window else after_space
        start = stop
    return out.getvalue().strip()


class _Fields:
    """A line's first four fields, split off; the rest is split only when its words are asked for."""

    def __init__(self, line: str) -> None:
        parts = line.split(None, 4)
        self.head = parts[:4]
        rest = parts[4] if len(parts) > 4 else ""
        if len(rest) > LONG_TEXT:
            text = _squeeze(rest)
            self.tail: tuple[str, ...] | WordRun = WordRun(text, text.count(" ") + 1)
        else:
            self.tail = tuple(rest.split())
        self.count = len(self.head) + len(self.tail)

    def words(self, skip: int) -> Sequence[str]:
        """The fields after the first ``skip`` (``skip`` <= 4)."""
        lead = self.head[skip:]
        if not isinstance(self.tail, WordRun):
            return tuple(lead) + self.tail
        if not lead:
            return self.tail
        return WordRun(" ".join([*lead, self.tail.text]), len(lead) + self.tail.count)


@dataclass(frozen=True)
class Hypothesis:
    """One line of an n-best list."""

    utterance: str
    rank: int
    """Position within its utterance's list, from 1 (Kaldi's N)."""
    words: Sequence[str]
    """A tuple of the words, or a :class:`WordRun` for a hypothesis of over :data:`LONG_TEXT` characters."""
    acoustic: float
    """Acoustic (or translation model) score, log10."""
    old_lm: float | None
    """The LM score the list came with (SRILM layout only), log10."""
    line: int
    """Line of the input it was read from, from 1."""

    @property
    def text(self) -> str:
        return self.words.text if isinstance(self.words, WordRun) else " ".join(self.words)

    @property
    def key(self) -> str:
        return f"{self.utterance}-{self.rank}"


@dataclass
class NBestList:
    """The hypotheses of one utterance, in input order."""

    utterance: str
    hypotheses: list[Hypothesis] = field(default_factory=list)


Row = tuple[Hypothesis, float, float]
"""A rescored hypothesis: ``(hypothesis, lm, total)``."""


def read_score_table(path: str, strict: bool = False, stats: DecodeStats | None = None) -> dict[str, float]:
    """Read a Kaldi text table of ``KEY cost`` lines into key -> acoustic log10 score.

    Kaldi's costs are negated natural logs, so the score is ``-cost / ln(10)``.
    """
    name = display_name(path)
    scores: dict[str, float] = {}
    for number, line in enumerate(iter_lines(path, strict, stats), start=1):
        fields = line.split(None, 2)
        if not fields:
            continue
        if len(fields) != 2:
            found = len(fields) if len(fields) < 3 else sum(1 for _ in _WORD.finditer(line))
            raise DataError(f"{name}:{number}: expected 'KEY COST', found {found} fields")
        key, cost = fields
        if not _NUMBER.fullmatch(cost):
            raise DataError(f"{name}:{number}: cost {cost!r} is not a number")
        if float(cost) == -math.inf:
            raise DataError(f"{name}:{number}: cost is {cost!r}: a cost must be finite (or inf, probability zero)")
        if key in scores:
            raise DataError(f"{name}:{number}: duplicate key {key!r}")
        # + 0.0 turns a cost of 0 into 0.0, not -0.0 (which would print as "-0").
        scores[key] = -float(cost) / LN10 + 0.0
    return scores


def iter_nbest(path: str, fmt: str = "auto", scores: dict[str, float] | None = None, *,
               strict: bool = False, stats: DecodeStats | None = None) -> Iterator[NBestList]:
    """Yield each utterance's list as soon as its last line has been read.

    ``scores`` maps Kaldi keys to acoustic log10 scores (:func:`read_score_table`); each
    hypothesis needs an entry and each entry must be used. It is refused for SRILM
    lists, which carry their own. ``strict`` and ``stats`` are passed to
    :func:`rnnlm_cli.text.reading.iter_lines`. Bad arguments and a missing file fail at the
    call; errors in the data when the line holding them is reached.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown n-best format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if scores is not None and fmt == "srilm":
        raise UsageError("an acoustic score table goes with Kaldi n-best lists; SRILM lists carry their own")
    check_readable(path)
    return _read(path, fmt, scores, strict, stats)


def combined(acoustic: float, lm: float, lm_weight: float, word_penalty: float = 0.0, words: int = 0) -> float:
    """``acoustic + lm_weight * lm + word_penalty * words``, all log10.

    A zero weight drops its term, so an LM score of -inf with ``lm_weight=0`` gives the
    acoustic score rather than NaN.
    """
    lm_term = lm_weight * lm if lm_weight else 0.0
    penalty = word_penalty * words if word_penalty else 0.0
    return acoustic + lm_term + penalty


def interpolated(forward: float, backward: float, backward_weight: float) -> float:
    """``(1 - b) * forward + b * backward`` of a forward and a backward model's log10 scores
    (Kaldi's ``lmrescore_back.sh``); a weight of 0 or 1 gives that side exactly, never NaN from -inf.
    Floats or numpy arrays of them alike (the tuning grid interpolates every hypothesis at once)."""
    if backward_weight == 0.0:
        return forward
    if backward_weight == 1.0:
        return backward
    return (1.0 - backward_weight) * forward + backward_weight * backward


def format_line(hyp: Hypothesis, lm: float, total: float) -> str:
    """``KEY TOTAL ACOUSTIC LM NWORDS w1 ... wN``."""
    fields = [hyp.key, _number(total), _number(hyp.acoustic), _number(lm), str(len(hyp.words))]
    return " ".join(fields + [hyp.text] if len(hyp.words) else fields)


def rescore(lists: Iterable[NBestList], score_text: Callable[[list[str]], list[float]], lm_weight: float,
            word_penalty: float, sort: bool) -> Iterator[tuple[NBestList, list[Row]]]:
    """Yield each list with its ``(hypothesis, lm, total)`` rows.

    ``score_text`` is called once per list with the list's distinct texts, in first-seen
    order, and returns their LM log10 scores; hypotheses with the same text share one
    score. With ``sort`` the rows are ordered by total, best first, ties by rank;
    otherwise they keep the input order.
    """
    for nbest_list in lists:
        texts = list(dict.fromkeys(hyp.text for hyp in nbest_list.hypotheses))
        lm_scores = list(score_text(texts)) if texts else []
        if len(lm_scores) != len(texts):
            raise ValueError(f"score_text returned {len(lm_scores)} scores for {len(texts)} texts")
        lm_of = dict(zip(texts, lm_scores))
        rows: list[Row] = []
        for hyp in nbest_list.hypotheses:
            lm = lm_of[hyp.text]
            rows.append((hyp, lm, combined(hyp.acoustic, lm, lm_weight, word_penalty, len(hyp.words))))
        if sort:
            rows.sort(key=lambda row: (-row[2], row[0].rank))
        yield nbest_list, rows


def best_line(nbest_list: NBestList, rows: list[Row]) -> str:
    """``UTT w1 ... wN`` for the row of best total (ties: lowest rank), as Kaldi's text format."""
    if not rows:
        raise ValueError(f"utterance {nbest_list.utterance!r} has no hypotheses")
    best = min(rows, key=lambda row: (-row[2], row[0].rank))[0]
    return " ".join([nbest_list.utterance, best.text] if len(best.words) else [nbest_list.utterance])


def _number(x: float) -> str:
    # + 0.0 prints -0.0 as "0"; -inf stays "-inf".
    return f"{x + 0.0:.6g}"


def _read(path: str, fmt: str, scores: dict[str, float] | None, strict: bool,
          stats: DecodeStats | None) -> Iterator[NBestList]:
    name = display_name(path)
    layout: str | None = None
    current: NBestList | None = None
    started: dict[str, int] = {}  # utterance -> line its list started on
    unused = dict.fromkeys(scores) if scores is not None else None  # ordered, for the first unused key
    for number, line in enumerate(iter_lines(path, strict, stats), start=1):
        fields = _Fields(line)
        if not fields.count:
            continue
        where = f"{name}:{number}"
        if layout is None:
            layout = _first_layout(fields, fmt, where)
            if scores is not None and layout != _KALDI:
                raise UsageError(f"{where}: an acoustic score table goes with Kaldi n-best lists, "
                                 f"but this is {layout}")
        if layout == _KALDI:
            utterance, rank, words = _parse_kaldi(fields, where)
            acoustic, old_lm = 0.0, None
        else:
            utterance, acoustic, old_lm, words = _parse_srilm(fields, layout == _SRILM_ID, where)
            rank = None
        new = current is None or utterance != current.utterance
        if new and utterance in started:
            raise DataError(f"{where}: utterance {utterance!r} comes back after {current.utterance!r} started "
                            f"(its list began on line {started[utterance]}); keep each utterance's lines together")
        expected = 1 if new else len(current.hypotheses) + 1
        if rank is None:
            rank = expected
        elif rank != expected:
            _wrong_rank(utterance, rank, expected, current if not new else None, where)
        if scores is not None:
            key = f"{utterance}-{rank}"
            if key not in scores:
                raise DataError(f"{where}: no acoustic score for {key!r} in the score table")
            acoustic = scores[key]
            del unused[key]
        hyp = Hypothesis(utterance, rank, words, acoustic, old_lm, number)
        if new:
            if current is not None:
                yield current
            current = NBestList(utterance, [])
            started[utterance] = number
        current.hypotheses.append(hyp)
    if current is None:
        raise DataError(f"{name}: empty n-best list, no hypotheses to rescore; check the step that wrote it")
    if unused:
        first = next(iter(unused))
        raise DataError(f"{name}: {len(unused)} score table entries match no hypothesis (first: {first!r})")
    yield current


def _first_layout(fields: _Fields, fmt: str, where: str) -> str:
    """The layout the first line fits, for the requested format."""
    if fmt in ("auto", "srilm"):
        if _fits_srilm(fields, with_id=True):
            return _SRILM_ID
        if _fits_srilm(fields, with_id=False):
            return _SRILM_PLAIN
    if fmt in ("auto", "kaldi") and _KEY.fullmatch(fields.head[0]):
        return _KALDI
    wanted = {
        "auto": f"SRILM {_USAGE[_SRILM_ID]} (UTT optional) or Kaldi {_USAGE[_KALDI]}",
        "srilm": f"SRILM {_USAGE[_SRILM_ID]} (UTT optional)",
        "kaldi": f"Kaldi {_USAGE[_KALDI]} with N a positive integer",
    }[fmt]
    raise DataError(f"{where}: not an n-best line: expected {wanted}")


def _fits_srilm(fields: _Fields, with_id: bool) -> bool:
    first = 1 if with_id else 0
    if fields.count < first + 3:
        return False
    acoustic, lm, count = fields.head[first:first + 3]
    return (bool(_NUMBER.fullmatch(acoustic)) and bool(_NUMBER.fullmatch(lm)) and bool(_COUNT.fullmatch(count))
            and len(count) <= MAX_DIGITS and int(count) == fields.count - first - 3)


def _parse_srilm(fields: _Fields, with_id: bool, where: str) -> tuple[str, float, float, Sequence[str]]:
    """``(utterance, acoustic, lm, words)`` of a line in the layout the first line set."""
    first = 1 if with_id else 0
    layout = _USAGE[_SRILM_ID if with_id else _SRILM_PLAIN]
    if fields.count < first + 3:
        raise DataError(f"{where}: expected {layout} as on the first line, found {fields.count} fields")
    acoustic, lm, count = fields.head[first:first + 3]
    for label, value in (("ACOUSTIC", acoustic), ("LM", lm)):
        if not _NUMBER.fullmatch(value):
            raise DataError(f"{where}: {label} {value!r} is not a number (expected {layout} as on the first line)")
        if float(value) == math.inf:
            raise DataError(f"{where}: {label} is {value!r}: a score must be finite (or -inf, probability zero)")
    if not _COUNT.fullmatch(count):
        raise DataError(f"{where}: NWORDS {count!r} is not a count (expected {layout} as on the first line)")
    words = fields.words(first + 3)
    if natural(count, where, "NWORDS") != len(words):
        raise DataError(f"{where}: NWORDS is {int(count)} but the line has {len(words)} words")
    utterance = fields.head[0] if with_id else _PLAIN_UTTERANCE
    return utterance, float(acoustic), float(lm), words


def _parse_kaldi(fields: _Fields, where: str) -> tuple[str, int, Sequence[str]]:
    match = _KEY.fullmatch(fields.head[0])
    if match is None:
        raise DataError(f"{where}: key {fields.head[0]!r} is not UTT-N with N a positive integer")
    return match.group(1), natural(match.group(2), where, "the rank"), fields.words(1)


def _wrong_rank(utterance: str, rank: int, expected: int, current: NBestList | None, where: str) -> None:
    if current is not None and rank < expected:
        raise DataError(f"{where}: duplicate key '{utterance}-{rank}' "
                        f"(also on line {current.hypotheses[rank - 1].line})")
    raise DataError(f"{where}: expected '{utterance}-{expected}', found '{utterance}-{rank}'")
