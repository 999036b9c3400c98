"""Back-off n-gram models in the ARPA text format, as SRILM, KenLM and IRSTLM write them.

The file::

    \\data\\
    ngram 1=4
    ngram 2=3

    \\1-grams:
    -0.6990  </s>
    -99      <s>    -0.30
    ...
    \\2-grams:
    -0.30    <s> the
    ...
    \\end\\

Each entry is ``log10prob w1 ... wN [log10backoff]``, fields separated by any
whitespace. Scores follow the back-off recursion (Katz 1987; SRILM's ``ngram -ppl``)::

    log P(w | h) = log P*(w | h)                          if (h, w) is listed
                 = backoff(h) + log P(w | h minus its oldest word)   otherwise

with ``backoff(h) = 0`` when ``h`` itself is not listed. Words are interned to ids
once, so every n-gram is a tuple of small ints shared with the vocabulary.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence

from rnnlm_cli.errors import DataError
from rnnlm_cli.text.reading import check_readable, display_name, iter_lines, natural

UNK = "<unk>"
BOS = "<s>"
EOS = "</s>"
_NO_WORD = -1
"""Id of a context word outside the vocabulary of a model without ``<unk>``: no n-gram holds it."""
_COUNT_LINE = re.compile(r"ngram\s+([0-9]+)\s*=\s*([0-9]+)")

Key = tuple[int, ...]
_Lines = Iterator[tuple[int, str]]


class ArpaModel:
    """A back-off n-gram model held as one dict per order, from n-gram ids to log10 values."""

    def __init__(self, vocab: dict[str, int], probs: list[dict[Key, float]], backoffs: list[dict[Key, float]]):
        self._vocab = vocab
        self._probs = probs
        """``probs[k]``: the (k+1)-grams' log10 probabilities."""
        self._backoffs = backoffs
        """``backoffs[k]``: the (k+1)-grams' non-zero log10 back-off weights."""
        self._unk = vocab.get(UNK)

    @property
    def order(self) -> int:
        return len(self._probs)

    @property
    def has_unk(self) -> bool:
        return self._unk is not None

    @property
    def counts(self) -> tuple[int, ...]:
        """How many n-grams of each order, unigrams first."""
        return tuple(len(table) for table in self._probs)

    def __contains__(self, word: object) -> bool:
        return word in self._vocab

    def logprob(self, word: str, context: Sequence[str]) -> float:
        """log10 P(word | context); ``context`` oldest first, only its last ``order - 1`` words count.

        A word outside the vocabulary is read as ``<unk>``; without one, predicting it
        gives ``-inf``, and in the context only the words after it still count.
        """
        target = self._vocab.get(word, self._unk)
        if target is None:
            return -math.inf
        keep = self.order - 1
        recent = context[-keep:] if keep else ()
        return self._score(target, tuple(self._context_id(w) for w in recent))

    def sentence_logprobs(self, words: Sequence[str]) -> list[float]:
        """log10 probabilities of each word of one line and then ``</s>``, starting after ``<s>``.

        The same scores SRILM's ``ngram -ppl`` sums for the line (before it drops OOVs).
        """
        keep = self.order - 1
        history = [self._context_id(BOS)]
        scores = []
        for word in [*words, EOS]:
            target = self._vocab.get(word, self._unk)
            if target is None:
                scores.append(-math.inf)
                history.append(_NO_WORD)
            else:
                scores.append(self._score(target, tuple(history[-keep:]) if keep else ()))
                history.append(target)
        return scores

    def _context_id(self, word: str) -> int:
        found = self._vocab.get(word, self._unk)
        return _NO_WORD if found is None else found

    def _score(self, target: int, history: Key) -> float:
        probs, backoffs = self._probs, self._backoffs
        total = 0.0
        for start in range(len(history)):
            context = history[start:]
            found = probs[len(context)].get(context + (target,))
            if found is not None:
                return total + found
            total += backoffs[len(context) - 1].get(context, 0.0)
        # Every vocabulary word is a unigram, so the recursion always ends here.
        return total + probs[0][(target,)]


def read_arpa(path: str) -> ArpaModel:
    """Read an ARPA back-off model of any order from a file, a ``.gz`` file or stdin (``-``).

    Text before ``\\data\\`` is skipped. Every malformed line, a count that does not
    match its section, a missing section or ``\\end\\``, a repeated n-gram or a word that
    is not a unigram is a :class:`DataError` naming the file and line. An n-gram whose
    shorter prefix is missing is accepted: pruned models have them.
    """
    check_readable(path)
    name = display_name(path)
    # Strict decoding: replacing bytes of another encoding could merge distinct words.
    lines: _Lines = enumerate(iter_lines(path, strict=True), start=1)
    counts, (number, marker) = _read_header(lines, name)
    vocab: dict[str, int] = {}
    probs: list[dict[Key, float]] = []
    backoffs: list[dict[Key, float]] = []
    for order, expected in enumerate(counts, start=1):
        if marker != f"\\{order}-grams:":
            raise DataError(f"{name}:{number}: expected \\{order}-grams:, found {marker}")
        table: dict[Key, float] = {}
        weights: dict[Key, float] = {}
        keep_backoff = order < len(counts)
        end_number, end_marker, found = _read_section(lines, name, order, vocab, table, weights, keep_backoff)
        if found != expected:
            raise DataError(f"{name}:{number}: \\{order}-grams: has {found} entries, \\data\\ says {expected}")
        probs.append(table)
        backoffs.append(weights)
        number, marker = end_number, end_marker
    if marker != "\\end\\":
        raise DataError(f"{name}:{number}: expected \\end\\, found {marker}")
    return ArpaModel(vocab, probs, backoffs)


def _read_header(lines: _Lines, name: str) -> tuple[list[int], tuple[int, str]]:
    """The counts of ``\\data\\``, and the first section marker after them."""
    for _, line in lines:
        if line.strip() == "\\data\\":
            break
    else:
        raise DataError(f"{name}: no \\data\\ line: not an ARPA model")
    counts: list[int] = []
    for number, line in lines:
        text = line.strip()
        if not text:
            continue
        if text.startswith("\\"):
            if not counts:
                raise DataError(f"{name}:{number}: \\data\\ lists no n-gram counts")
            if counts[0] == 0:
                raise DataError(f"{name}:{number}: the model has no unigrams")
            return counts, (number, text)
        match = _COUNT_LINE.fullmatch(text)
        if match is None:
            raise DataError(f"{name}:{number}: expected 'ngram N=count', found {text!r}")
        where = f"{name}:{number}"
        order, count = natural(match[1], where, "the order"), natural(match[2], where, "the count")
        if order != len(counts) + 1:
            raise DataError(f"{name}:{number}: expected the count of order {len(counts) + 1}, found order {order}")
        counts.append(count)
    raise DataError(f"{name}: ends inside the \\data\\ section, before \\end\\")


def _read_section(lines: _Lines, name: str, order: int, vocab: dict[str, int], table: dict[Key, float],
                  weights: dict[Key, float], keep_backoff: bool) -> tuple[int, str, int]:
    """Fill ``table`` and ``weights`` with one order's entries (unigrams also fill ``vocab``).

    Returns the line number and text of the marker that ends the section, and how many
    entries it held.
    """
    lookup = vocab.__getitem__
    short, full = order + 1, order + 2
    found = 0
    for number, line in lines:
        fields = line.split()
        if not fields:
            continue
        try:
            prob = float(fields[0])
        except ValueError:
            if fields[0].startswith("\\"):
                return number, line.strip(), found
            raise DataError(f"{name}:{number}: expected a log10 probability, found {fields[0]!r}") from None
        # log10 of a probability is at most 0; -inf (probability zero) is one.
        if not prob <= 0.0:
            raise DataError(f"{name}:{number}: log10 probability {fields[0]!r} is above 0 or not a number: "
                            "not a probability")
        width = len(fields)
        if width != short and width != full:
            raise DataError(f"{name}:{number}: expected {order} words and a probability, "
                            f"with an optional back-off weight; found {width} fields")
        if order == 1:
            word = fields[1]
            if word not in vocab:
                vocab[word] = len(vocab)
            key: Key = (vocab[word],)
        else:
            try:
                key = tuple(map(lookup, fields[1:short]))
            except KeyError as exc:
                raise DataError(f"{name}:{number}: word {exc.args[0]!r} is not among the unigrams") from None
        found += 1
        table[key] = prob
        if len(table) != found:
            raise DataError(f"{name}:{number}: n-gram {' '.join(fields[1:short])!r} is listed twice")
        if width == full:
            try:
                backoff = float(fields[-1])
            except ValueError:
                raise DataError(f"{name}:{number}: expected a log10 back-off weight, found {fields[-1]!r}") from None
            if not math.isfinite(backoff):
                raise DataError(f"{name}:{number}: back-off weight {fields[-1]!r} is not finite")
            if keep_backoff and backoff != 0.0:
                weights[key] = backoff
    raise DataError(f"{name}: ends inside the \\{order}-grams: section, before \\end\\")
