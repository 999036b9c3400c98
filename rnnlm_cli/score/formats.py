"""Score reports as text: SRILM's ``ngram -ppl -debug N`` layout, KenLM-style query lines, and
the report of a fitted mixture weight. (:mod:`.text_outputs` puts them together, line by line,
into what ``eval`` prints.)

SRILM (debug 1 and 2), for each line::

    the cat sat
    \tp( the | <s> ) \t= 0.0123457 [ -1.90849 ]          (debug 2: one line per word)
    \tp( cat | the ...) \t= 0.0513 [ -1.28988 ]
    \tp( zebra | cat ...) \t= [OOV] 0 [ -inf ]
    \tp( </s> | sat ...) \t= 0.31 [ -0.508638 ]
    1 sentences, 3 words, 0 OOVs
    0 zeroprobs, logprob= -4.68 ppl= 14.8 ppl1= 36.3
    <blank line>

then the file's totals (``file NAME: ...`` and the same second line). The context shows
the previous word and ``...`` for the longer history a recurrent model always uses.
Numbers have six significant digits, as SRILM prints them.

Query (one output line per input line, printed as soon as the line is scored)::

    the=-1.90849<TAB>cat=-1.28988<TAB>zebra=OOV<TAB></s>=-0.508638<TAB>Total: -3.68722 OOV: 1

Minimal pairs (:mod:`rnnlm_cli.score.pairs`), one row per group::

    pairs.tsv: 1200 pairs, 1077 right (accuracy 0.8975), 0 ties
    group         right  total  accuracy
    all            1077   1200    0.8975
    agreement       540    600    0.9000
    distance 3-4     78     80    0.9750
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

from rnnlm_cli.score.word_scoring import SENTENCE_START, WordScore


def number(value: float) -> str:
    """Six significant digits, as SRILM prints; ``undefined`` for NaN."""
    if math.isnan(value):
        return "undefined"
    return f"{value:.6g}"


def totals_lines(totals, name: str | None = None) -> list[str]:
    """SRILM's two summary lines; with ``name``, the first names the file."""
    first = f"{totals.sentences} sentences, {totals.words} words, {totals.oovs} OOVs"
    if name is not None:
        first = f"file {name}: {first}"
    second = (f"{totals.zeroprobs} zeroprobs, logprob= {number(totals.logprob)} "
              f"ppl= {number(totals.ppl)} ppl1= {number(totals.ppl1)}")
    return [first, second]


class WordLines:
    """Per-word lines of debug level 2, field for field as SRILM's ``ngram -ppl -debug 2``:
    ``\tp( WORD | CONTEXT ...) \t= [Ngram] P [ LOG10 ]``, or ``[OOV] 0 [ -inf ]``.

    SRILM's tag names the longest n-gram the model used; the network conditions on the whole
    sentence so far, so N counts ``<s>`` and every word before this one (the first word is a
    2gram, as in a full-context n-gram model). Remembers the context across pieces of a line.

    A backward model's words (a whole line, in reading order) are each given the words after
    them: the context shown is the next word, the last word's is ``<s>`` (where the backward
    model starts) and ``</s>``'s the first word, and N counts the words from the line's end.
    """

    def __init__(self) -> None:
        self._previous: str | None = None
        self._order = 2

    def lines(self, words: Iterable[WordScore]) -> list[str]:
        words = list(words)
        if words and words[0].backward:
            return _backward_lines(words)
        out = []
        for word in words:
            if self._previous is None:
                context = f"{SENTENCE_START} "
            else:
                context = f"{self._previous} ..."
            if word.oov:
                value = "[OOV] 0 [ -inf ]"
            else:
                value = f"[{self._order}gram] {number(10.0 ** word.log10)} [ {number(word.log10)} ]"
            out.append(f"\tp( {word.word} | {context}) \t= {value}")
            self._previous = None if word.ends_line else word.word
            self._order = 2 if word.ends_line else self._order + 1
        return out


def _backward_lines(words: list[WordScore]) -> list[str]:
    """:class:`WordLines` for a backward model's line: each word's context is the one after it."""
    body = [word for word in words if not word.ends_line]
    contexts = [f"{word.word} ..." for word in body[1:]] + ([f"{SENTENCE_START} "] if body else [])
    orders = [len(body) - index + 1 for index in range(len(body))]
    if len(body) < len(words):  # the line end: predicted last, after the first word
        contexts.append(f"{body[0].word} ..." if body else f"{SENTENCE_START} ")
        orders.append(len(body) + 2 if body else 2)
    out = []
    for word, context, order in zip(words, contexts, orders):
        value = "[OOV] 0 [ -inf ]" if word.oov else f"[{order}gram] {number(10.0 ** word.log10)} [ {number(word.log10)} ]"
        out.append(f"\tp( {word.word} | {context}) \t= {value}")
    return out


def query_entries(words: Iterable[WordScore]) -> list[str]:
    """``word=log10`` per word (``word=OOV`` for an OOV), as KenLM's ``query`` lists them."""
    return [f"{word.word}={'OOV' if word.oov else number(word.log10)}" for word in words]


def query_total(totals, words: Iterable[WordScore]) -> str:
    """The line's total and its words outside the vocabulary, scored as ``<unk>`` (``--unk``) or not."""
    return f"Total: {number(totals.logprob)} OOV: {sum(word.oov or word.unknown for word in words)}"


KENLM_UNK_ID = 0
"""KenLM's id of ``<unk>``, which it reports for every word outside its vocabulary."""


def kenlm_entries(words: Iterable[WordScore], vocab_id: Callable[[str], int]) -> list[str]:
    """KenLM ``query``'s ``word=ID ORDER log10`` for each word of one line, ``</s>`` last.

    ORDER is KenLM's n-gram length: here the sentence so far, ``<s>`` included, since the
    network conditions on all of it; a word outside the vocabulary is KenLM's ``<unk>``, id 0
    at order 1, with the model's ``<unk>`` probability."""
    out, order = [], 2
    for word in words:
        if word.unknown:
            out.append(f"{word.word}={KENLM_UNK_ID} 1 {number(word.log10)}")
        else:
            out.append(f"{word.word}={vocab_id(word.word)} {order} {number(word.log10)}")
        order += 1
    return out


class KenlmTotals:
    """The corpus figures KenLM's ``query`` ends with, every word and ``</s>`` counted."""

    def __init__(self) -> None:
        self.logprob = self.unknown_logprob = 0.0
        self.tokens = self.oovs = 0

    def add(self, words: Iterable[WordScore]) -> str:
        """Count one line's words; its ``Total: log10 OOV: n`` field."""
        logprob, oovs = 0.0, 0
        for word in words:
            logprob += word.log10
            self.tokens += 1
            if word.unknown:
                oovs += 1
                self.unknown_logprob += word.log10
        self.logprob += logprob
        self.oovs += oovs
        return f"Total: {number(logprob)} OOV: {oovs}"

    def summary(self) -> list[str]:
        including = 10.0 ** (-self.logprob / max(self.tokens, 1))
        known = self.tokens - self.oovs
        excluding = 10.0 ** (-(self.logprob - self.unknown_logprob) / max(known, 1))
        return [f"Perplexity including OOVs:\t{number(including)}", f"Perplexity excluding OOVs:\t{number(excluding)}",
                f"OOVs:\t{self.oovs}", f"Tokens:\t{self.tokens}"]


def fit_lines(path: str, fit) -> list[str]:
    """The report of a mixture weight fitted on ``path`` (:class:`rnnlm_cli.score.mixing.FitResult`)."""
    return [f"fit on {path}: {fit.words} words, lambda= {number(fit.weight)} ({fit.iterations} EM iterations)",
            f"ppl rnn= {number(fit.rnn_ppl)} ngram= {number(fit.ngram_ppl)} mix= {number(fit.mix_ppl)}"]


def pairs_lines(result) -> list[str]:
    """The accuracy on minimal pairs (:class:`rnnlm_cli.score.pairs.PairsResult`) as a table:
    overall, then each category, then each distance bucket, shortest first."""
    overall = result.overall
    rows = [("all", overall)] + list(result.by_category.items())
    rows += [(f"distance {tally.label}", tally) for tally in result.by_distance]
    width = max(len("group"), *(len(name) for name, _ in rows))
    head = (f"{result.file + ': ' if result.file else ''}{overall.total} pairs, {overall.correct} right "
            f"(accuracy {overall.accuracy:.4f}), {result.ties} ties")
    lines = [head, f"{'group'.ljust(width)}  {'right':>6}  {'total':>6}  accuracy"]
    lines += [f"{name.ljust(width)}  {tally.correct:>6}  {tally.total:>6}  {tally.accuracy:>8.4f}" for name, tally in rows]
    return lines


def vocabulary_ids(tokenizer) -> dict[str, int]:
    """A word model's ids by word, ``</s>`` (the line end) as its end-of-line token: the ids
    KenLM's query layout prints."""
    from rnnlm_cli.score.word_scoring import SENTENCE_END

    return {**tokenizer.index, SENTENCE_END: tokenizer.eos_id}
