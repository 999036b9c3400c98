"""From token probabilities to word probabilities, and the mix with an n-gram model.

A word's probability is the product of its tokens' (characters, bytes or subword pieces
with the separator before them), so every tokenizer is scored per word, as SRILM scores.
The line end is the word ``</s>``. A word outside a word-level vocabulary is an OOV: the
model reads it as ``<unk>``, and unless ``unk`` is asked for, its probability is left out
of the totals, as SRILM leaves it out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator

from rnnlm_cli.errors import UsageError
from rnnlm_cli.score.mixing import mix_log10
from rnnlm_cli.score.token_scoring import Piece, PieceEncoder, score_stream
from rnnlm_cli.units import LN10

SENTENCE_START = "<s>"
SENTENCE_END = "</s>"


@dataclass
class WordScore:
    """One scored word of a line."""

    word: str
    """The word as written, or ``</s>`` for the line end."""
    log10: float
    """log10 probability under the scorer (the mix, when an n-gram model is mixed in)."""
    oov: bool = False
    """Outside the vocabulary and left out of the totals."""
    tokens: int = 1
    """Tokens whose probabilities make up the word's."""
    model_log10: float = math.nan
    """log10 probability under the neural model alone."""
    ngram_log10: float = math.nan
    """log10 probability under the n-gram model, when one is mixed in."""
    ends_line: bool = False
    """The line end (a word written ``</s>`` in the text is an ordinary word)."""
    unknown: bool = False
    """Not in the model's vocabulary, whether left out (``oov``) or scored as ``<unk>``."""
    backward: bool = False
    """Scored by a backward model (``train --reverse``): given the words after it in the line,
    and ``</s>`` given the whole line (its first word last)."""

    @property
    def zeroprob(self) -> bool:
        return not self.oov and self.log10 == -math.inf


def piece_words(piece: Piece, unk: bool = False) -> list[WordScore]:
    """The scored words of ``piece`` (``logprobs`` filled), ``</s>`` last if it ends its line.
    In reading order whatever the model's direction: a backward model's piece is a whole line,
    and each word's tokens are summed into that word.

    ``unk``: score OOV words as ``<unk>`` instead of leaving them out.
    """
    words = piece.text.split()
    sums = [0.0] * (len(words) + 1)
    counts = [0] * (len(words) + 1)
    for index, value in zip(piece.word_index, piece.logprobs):
        sums[index] += value
        counts[index] += 1
    scored = []
    for index, word in enumerate(words):
        log10 = sums[index] / LN10
        scored.append(WordScore(word, log10, oov=piece.oov[index] and not unk, tokens=counts[index],
                                model_log10=log10, unknown=piece.oov[index], backward=piece.backward))
    if piece.last:
        log10 = sums[-1] / LN10
        scored.append(WordScore(SENTENCE_END, log10, tokens=counts[-1], model_log10=log10, ends_line=True,
                                backward=piece.backward))
    return scored


class NgramMix:
    """Mixes each word's probability with an n-gram model's, per word:
    ``P = weight * P_model + (1 - weight) * P_ngram`` (``weight`` is the neural model's, as
    Mikolov's rnnlm's ``-lambda``).

    The n-gram context restarts at every line (``<s>``) and runs on across the pieces of
    a long line. An OOV word stays an OOV of the mix: the neural model's vocabulary decides.
    """

    def __init__(self, ngram, weight: float) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError("the mixture weight must be within [0, 1]")
        self._ngram = ngram
        self.weight = weight
        self._history: list[str] = [SENTENCE_START]

    def apply(self, words: Iterable[WordScore]) -> None:
        """Fill ``ngram_log10`` and set ``log10`` to the mix, in place, in text order."""
        keep = max(self._ngram.order - 1, 1)
        for word in words:
            word.ngram_log10 = self._ngram.logprob(word.word, self._history)
            if not word.oov:
                word.log10 = mix_log10(word.model_log10, word.ngram_log10, self.weight)
            if word.ends_line:
                self._history = [SENTENCE_START]
            else:
                self._history.append(word.word)
                del self._history[:-keep]


def check_mixable(tokenizer, mix: NgramMix | None) -> None:
    """UsageError for a per-word mix with a backward model: its word probabilities are each
    given the words after it, the n-gram model's given the words before, so their per-word
    mix is no probability of the sentence (Kaldi combines a backward model's sentence scores)."""
    if mix is not None and tokenizer.reverse:
        raise UsageError("--mix-lm mixes each word's probability with the n-gram model's, which reads left to "
                         "right; this model reads right to left (trained with --reverse): score with the two "
                         "apart and combine their sentence scores")


def long_sentence_log10(model, tokenizer, text: str, device, *, unk: bool = True, mix: NgramMix | None = None,
                        piece_chars: int = 1 << 16, chunk_tokens: int = 256) -> float:
    """The log10 score of ``text`` as one sentence from a fresh state, as the total of
    its words: OOVs left out, as SRILM sums them, and ``-inf`` when a word has probability
    zero (possible only in a mix), so that such a hypothesis ranks below every possible one.

    ``text`` is encoded and scored a piece of at most ``piece_chars`` characters at a time,
    cut after a space, so memory holds one piece's tokens and words, never the text's: for
    a hypothesis of megabytes.
    """
    return sum(sentence_log10(words) for words in long_sentence_words(
        model, tokenizer, text, device, unk=unk, mix=mix, piece_chars=piece_chars, chunk_tokens=chunk_tokens))


def long_sentence_words(model, tokenizer, text: str, device, *, unk: bool = True, mix: NgramMix | None = None,
                        piece_chars: int = 1 << 16, chunk_tokens: int = 256, state=None) -> Iterator[list[WordScore]]:
    """The scored words of ``text`` as one sentence, a piece of at most ``piece_chars``
    characters at a time (``</s>`` ends the last), from ``state`` (None: a fresh state).
    A backward model reads the text whole, from its end (:mod:`rnnlm_cli.text.backward`)."""
    check_mixable(tokenizer, mix)
    pieces = PieceEncoder(tokenizer).pieces(text_pieces(text, piece_chars))
    for piece in score_stream(model, pieces, device, chunk_tokens, state=state):
        words = piece_words(piece, unk=unk)
        if mix is not None:
            mix.apply(words)
        yield words


def sentence_log10(words) -> float:
    """The log10 total of scored words as a hypothesis' score: OOVs left out, ``-inf`` for a
    word of probability zero. (Perplexity totals leave that word out instead and count it
    in ``zeroprobs``, as SRILM does; a score that ranks must not reward it.)"""
    return sum(word.log10 for word in words if not word.oov)


def text_pieces(text: str, size: int) -> Iterator[tuple[str, bool]]:
    """``(piece, ends_line)`` for consecutive pieces of ``text``, each cut after its last space
    within ``size`` characters. A word is never cut: one longer than ``size`` makes its piece
    run on to the space after it, so every word of a hypothesis is scored as one word."""
    start = 0
    while len(text) - start > size:
        cut = text.rfind(" ", start, start + size) + 1
        if cut <= start:
            cut = text.find(" ", start + size) + 1
            if cut <= 0:
                break  # the rest is one word
        yield text[start:cut], False
        start = cut
    yield text[start:], True
