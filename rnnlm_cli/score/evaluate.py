"""Scoring text with a trained model: perplexity in SRILM's terms.

Every line is scored as a sentence (:mod:`rnnlm_cli.score.token_scoring`): its tokens and the
line end are predicted, in the ``stream`` context with the state carried across lines (the
literature's continuous-stream perplexity), in the ``sentence`` context each line afresh.
Token probabilities are then summed per word (:mod:`rnnlm_cli.score.word_scoring`).

SRILM's conventions (``ngram -ppl``): ``logprob`` is the log10 probability of all
scored words and line ends; a word outside a word-level vocabulary is an OOV and its
probability is left out of ``logprob`` and of both denominators (the model still reads it
as ``<unk>``; ``unk=True`` scores it as ``<unk>`` instead). A word of probability zero
(possible only in a mix with an n-gram model) is a zeroprob, left out the same way.
``ppl = 10 ** (-logprob / (words - oovs - zeroprobs + sentences))`` and
``ppl1 = 10 ** (-logprob / (words - oovs - zeroprobs))``. With character, byte or subword
tokenizers ``logprob`` sums the pieces of each word, so ``ppl`` is per word.

A word tokenizer reads a literal ``<eos>`` in the text as ``<unk>`` (an OOV: text never
fakes a line end; counted in ``literal_specials``) and a literal ``<unk>`` as the unknown-word
token (not an OOV, not counted: corpora that spell their rare words ``<unk>`` mean just that). A line longer than :data:`rnnlm_cli.text.reading.MAX_LINE_BYTES`
is read in pieces and still scored as one sentence, without holding all its tokens.

Blank lines (empty, or only space, tab, CR, FF, VT) follow SRILM in the ``sentence`` context:
``ngram -ppl`` reads lines through ``File::getline``, which drops them, so they are no
sentences, predict no ``</s>`` and add nothing to the totals (``skip_blank_lines``; without it,
as KenLM's ``query``, a blank line is the sentence ``</s>`` alone). In the ``stream`` context,
which SRILM lacks, a blank line's line end is text the model predicts (a paragraph break in
WikiText), so it is scored and counted as a sentence of no words, as benchmark figures count it.

:func:`fit_mix_weight` scores a held-out file with both the model and an n-gram model and fits
the weight of their per-word mix on it (the mixture itself: :mod:`rnnlm_cli.score.mixing`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from rnnlm_cli.errors import DataError
from rnnlm_cli.score.dynamic_fit import AdaptationReport, adaptation_report
from rnnlm_cli.score.mixing import FitResult, fit_weight
from rnnlm_cli.score.scoring_config import CONTEXTS, ScoringConfig
from rnnlm_cli.score.token_scoring import PieceEncoder, RecentAnswers, score_sentences, score_stream
from rnnlm_cli.score.word_scoring import NgramMix, WordScore, check_mixable, piece_words
from rnnlm_cli.text.corpus import input_warnings
from rnnlm_cli.text.reading import DecodeStats, display_name, iter_segments
from rnnlm_cli.text.tokenfile import is_token_file
from rnnlm_cli.units import LN10, perplexity, perplexity_log10

__all__ = ["CONTEXTS", "EvalResult", "TextScorer", "Totals", "evaluate_file", "score_file"]


@dataclass
class Totals:
    """SRILM's counts over some scored words: a sentence's or a file's."""

    sentences: int = 0
    words: int = 0
    oovs: int = 0
    zeroprobs: int = 0
    logprob: float = 0.0

    def add(self, scored: Iterable[WordScore]) -> None:
        for word in scored:
            if word.ends_line:
                self.sentences += 1
            else:
                self.words += 1
                self.oovs += word.oov
            if word.oov:
                continue
            if word.zeroprob:
                self.zeroprobs += 1
            else:
                self.logprob += word.log10

    @property
    def ppl(self) -> float:
        return perplexity_log10(self.logprob, self.words - self.oovs - self.zeroprobs + self.sentences)

    @property
    def ppl1(self) -> float:
        return perplexity_log10(self.logprob, self.words - self.oovs - self.zeroprobs)


@dataclass
class EvalResult(Totals):
    """Totals of a scored text, in SRILM's terms (log10), and what reading it found."""

    file: str = ""
    """The text as named on the command line, "-" for stdin (SRILM's ``file -:``); messages
    name it :attr:`shown_name`."""
    tokens: int = 0
    """Tokens predicted, line ends included (OOV words' tokens excluded)."""
    token_nll: float = 0.0
    """Sum of the neural model's natural-log losses over those tokens."""
    encoded_tokens: int = 0
    """Tokens the text encoded to, line ends excluded."""
    unk_tokens: int = 0
    """Of those, ``<unk>``: OOV words (word tokenizer) or unknown characters (char)."""
    byte_tokens: int = 0
    """Of those, sentencepiece byte-fallback pieces."""
    invalid_lines: int = 0
    control_chars: int = 0
    """C0 control characters other than TAB, and DEL, read as ordinary text."""
    literal_specials: int = 0
    """Word tokenizer only: words spelled ``<eos>``, read as ``<unk>``."""
    sentence_logprobs: list[float] | None = field(default=None, repr=False)
    adaptation: AdaptationReport | None = None
    """What dynamic evaluation did, when it ran."""

    @property
    def token_ppl(self) -> float:
        return perplexity(self.token_nll / self.tokens) if self.tokens else math.nan

    @property
    def bits_per_token(self) -> float:
        """The model's cross-entropy in bits per token predicted (per character for a character model)."""
        return self.token_nll / self.tokens / math.log(2) if self.tokens else math.nan

    def add_words(self, scored: Sequence[WordScore]) -> None:
        self.add(scored)
        for word in scored:
            if not word.oov:
                self.tokens += word.tokens
                self.token_nll -= word.model_log10 * LN10

    @property
    def shown_name(self) -> str:
        """The text's name in messages: "stdin" for "-"."""
        return display_name(self.file)

    def to_dict(self) -> dict[str, Any]:
        encoded = max(self.encoded_tokens, 1)
        return {
            "file": self.file, "sentences": self.sentences, "words": self.words, "oovs": self.oovs,
            "zeroprobs": self.zeroprobs, "logprob": self.logprob, "ppl": self.ppl, "ppl1": self.ppl1,
            "tokens": self.tokens, "token_ppl": self.token_ppl, "bits_per_token": self.bits_per_token,
            "encoded_tokens": self.encoded_tokens,
            "unk_tokens": self.unk_tokens, "unk_rate": self.unk_tokens / encoded,
            "byte_fallback_tokens": self.byte_tokens, "byte_fallback_rate": self.byte_tokens / encoded,
            "invalid_lines": self.invalid_lines, "control_chars": self.control_chars,
            "literal_specials": self.literal_specials,
            **({} if self.adaptation is None else {"dynamic": self.adaptation.record}),
        }

    def warnings(self) -> list[str]:
        """One line per kind of surprise reading the text found, for the caller to show."""
        return input_warnings(self.shown_name, invalid_lines=self.invalid_lines, control_chars=self.control_chars,
                              literal_specials=self.literal_specials)


def evaluate_file(
    model: torch.nn.Module,
    tokenizer,
    path: str,
    device: torch.device,
    config: ScoringConfig = ScoringConfig(),
    *,
    ngram=None,
    strict: bool = False,
    per_sentence: bool = False,
    eager: bool = False,
    skip_blank_lines: bool = True,
    on_words: Callable[[str, list[WordScore], bool], None] | None = None,
    on_sentence: Callable[[int, float], None] | None = None,
) -> EvalResult:
    """Score every line of ``path`` (a file, a ``.gz`` file or ``-``) as ``config`` asks:
    its context, OOVs as ``<unk>`` or not, the neural cache, dynamic evaluation, the
    precision of the matrix products, and with ``ngram`` (:class:`rnnlm_cli.score.arpa.ArpaModel`)
    the per-word mix at ``config.mix_weight``.

    Dynamic evaluation changes the model's weights while scoring; they are put back before
    this returns, so the next text starts from the trained ones. ``strict``, ``per_sentence``,
    ``eager``, ``skip_blank_lines``, ``on_words`` and ``on_sentence`` are those of :func:`score_file`.
    """
    with config.precision(device):
        dynamic = config.build_dynamic(model)
        try:
            result = score_file(model, tokenizer, path, device, context=config.context, strict=strict, unk=config.unk,
                                per_sentence=per_sentence, eager=eager, skip_blank_lines=skip_blank_lines,
                                cache=config.build_cache(), dynamic=dynamic,
                                mix=None if ngram is None else NgramMix(ngram, config.mix_weight),
                                on_words=on_words, on_sentence=on_sentence)
            result.adaptation = adaptation_report(dynamic)
            return result
        finally:
            if dynamic is not None:
                dynamic.restore()


def score_file(
    model: torch.nn.Module,
    tokenizer,
    path: str,
    device: torch.device,
    *,
    context: str = "stream",
    strict: bool = False,
    unk: bool = False,
    per_sentence: bool = False,
    eager: bool = False,
    skip_blank_lines: bool = True,
    cache=None,
    dynamic=None,
    mix: NgramMix | None = None,
    chunk_tokens: int = 256,
    batch_tokens: int = 4096,
    on_words: Callable[[str, list[WordScore], bool], None] | None = None,
    on_sentence: Callable[[int, float], None] | None = None,
) -> EvalResult:
    """Score every line of ``path`` (a file, a ``.gz`` file or ``-``) with the parts given,
    built already: what :func:`evaluate_file` does from a config, for callers that hold their
    own cache or dynamic evaluation. The precision is the caller's.

    ``on_words(text, words, ends_line)`` gets each piece of text and its scored words
    (``</s>`` last at a line end) and ``on_sentence(count, log10_prob)`` each line's total,
    as soon as they are scored, in input order, so callers can stream them. ``eager``
    scores each line as soon as it is read (no read-ahead: a coprocess gets its answer).
    ``unk`` scores OOV words as ``<unk>``; ``cache`` (:class:`rnnlm_cli.score.cache.NeuralCache`)
    and ``dynamic`` (:class:`rnnlm_cli.score.dynamic.DynamicEvaluation`) need the stream context,
    which they carry across lines; ``mix`` mixes each word with an n-gram model.
    ``skip_blank_lines``: in the sentence context, a blank line is skipped as SRILM skips it
    (no callback hears of it, and ``per_sentence`` has no score for it); False scores it as
    the sentence ``</s>``, as KenLM does, for callers that answer every line.
    """
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}")
    check_mixable(tokenizer, mix)
    model.eval()
    stats = DecodeStats()
    result = EvalResult(file=path, sentence_logprobs=[] if per_sentence else None)
    from_tokens = is_token_file(path)
    encoder = PieceEncoder(tokenizer, unk_words_are_oov=from_tokens)
    segments = token_file_segments(path, tokenizer) if from_tokens else iter_segments(path, strict=strict, stats=stats)
    pieces = encoder.pieces(segments, skip_blank_lines=skip_blank_lines and context == "sentence")
    if context == "stream" or cache is not None or dynamic is not None:
        # Adapting needs the text in order: in the sentence context each line starts afresh,
        # while the cache and the adapted weights carry on.
        scored = score_stream(model, pieces, device, chunk_tokens, eager=eager, cache=cache, dynamic=dynamic,
                              lines_alone=context != "stream")
    else:
        scored = score_sentences(model, pieces, device, batch_tokens, chunk_tokens, eager=eager)
    sentence = Totals()
    for piece in scored:
        words = piece_words(piece, unk=unk)
        if mix is not None:
            mix.apply(words)
        result.add_words(words)
        if on_words is not None:
            on_words(piece.text, words, piece.last)
        sentence.add(words)
        if not piece.last:
            continue
        if result.sentence_logprobs is not None:
            result.sentence_logprobs.append(sentence.logprob)
        if on_sentence is not None:
            on_sentence(result.sentences, sentence.logprob)
        sentence = Totals()
    counts = encoder.counts
    result.encoded_tokens, result.unk_tokens, result.byte_tokens = counts.tokens, counts.unk_tokens, counts.byte_tokens
    # In a token file, <unk> is an unknown word the encoding found, not a word spelled "<unk>".
    result.literal_specials = 0 if from_tokens else counts.literal_specials
    result.invalid_lines = stats.invalid_lines
    result.control_chars = stats.control_chars
    if result.sentences == 0:
        what = "only blank lines, which the sentence context skips" if counts.blank_lines else "empty input"
        raise DataError(f"{result.shown_name}: no text to score ({what})")
    return result


TOKEN_FILE_PIECE = 100_000
"""Most tokens of a token file's line decoded as one piece (a file without line ends is one line)."""


def token_file_segments(path: str, tokenizer) -> Iterator[tuple[str, bool]]:
    """``(text, ends_line)`` pieces of a token file that ``rnnlm tokenize`` or ``train`` wrote,
    decoded line by line (lines end at ``<eos>``), as :func:`iter_segments` gives a text's.
    The file must have been made with ``tokenizer``: ids mean nothing under another."""
    from rnnlm_cli.errors import TokenizerMismatchError
    from rnnlm_cli.text.tokenfile import open_token_file
    from rnnlm_cli.text.tokenizers import fingerprint

    token_file = open_token_file(path)
    if fingerprint(token_file.tokenizer) != fingerprint(tokenizer):
        raise TokenizerMismatchError(f"{path}: token file was made with another tokenizer than the model's")
    # A backward model's line is decoded whole: its ids start at the line's end.
    most = sys.maxsize if tokenizer.reverse else TOKEN_FILE_PIECE
    line: list[int] = []
    for block in token_file.tokens.blocks():
        ends = np.flatnonzero(block == tokenizer.eos_id)
        start = 0
        for end in [*ends.tolist(), len(block)]:
            line.extend(block[start:end].tolist())
            while len(line) > most:
                yield tokenizer.decode(line[:most]), False
                line = line[most:]
            if end < len(block):
                yield tokenizer.decode(line), True
                line = []
            start = end + 1
    if line:
        yield tokenizer.decode(line), True


class TextScorer:
    """Scores texts one sentence each, from a fresh state, independently of each other.

    The same text always gets the same score: recent answers are remembered (up to
    ``memory`` texts), so batching never makes two copies differ in the last bits.
    Used for n-best rescoring; OOV words are scored as ``<unk>`` unless ``unk`` is False.
    """

    def __init__(self, model, tokenizer, device, *, unk: bool = True, mix: NgramMix | None = None,
                 batch_tokens: int = 4096, chunk_tokens: int = 256, memory: int = 100_000) -> None:
        check_mixable(tokenizer, mix)
        self._model = model.eval()
        self._tokenizer = tokenizer
        self._device = device
        self._unk = unk
        self._mix = mix
        self._batch_tokens = batch_tokens
        self._chunk_tokens = chunk_tokens
        self._known = RecentAnswers(memory)

    def score(self, texts: Sequence[str]) -> list[Totals]:
        """Each text's totals (one sentence each; ``logprob`` is its log10 score)."""
        new = self._known.missing(texts)
        encoder = PieceEncoder(self._tokenizer)
        pieces = [encoder.encode(text, True, context=self._tokenizer.eos_id) for text in new]
        for text, piece in zip(new, score_sentences(self._model, pieces, self._device, self._batch_tokens,
                                                    self._chunk_tokens)):
            words = piece_words(piece, unk=self._unk)
            if self._mix is not None:
                self._mix.apply(words)
            totals = Totals()
            totals.add(words)
            self._known[text] = totals
        return self._known.answers(texts)


def fit_mix_weight(model, tokenizer, path: str, device, config, ngram, *, strict: bool = False) -> FitResult:
    """The neural model's weight in a per-word mix with ``ngram``, fitted on the text ``path``,
    as SRILM's ``compute-best-mix`` fits one: both models score the text word by word, and EM
    finds the weight (:func:`rnnlm_cli.score.mixing.fit_weight`). The neural model decides what
    an OOV is (left out, as when scoring); line ends count as words, as in ``ppl``. ``config``'s
    context, cache, dynamic evaluation and precision apply to the neural side, whose weights are
    the trained ones again afterwards."""
    if ngram is None:
        raise ValueError("fitting the mixture weight needs the n-gram model")
    model_scores: list[float] = []
    ngram_scores: list[float] = []

    def collect(text, words, ends_line) -> None:
        for word in words:
            if not word.oov and (word.model_log10 > -math.inf or word.ngram_log10 > -math.inf):
                model_scores.append(word.model_log10)
                ngram_scores.append(word.ngram_log10)

    evaluate_file(model, tokenizer, path, device, config, ngram=ngram, strict=strict, on_words=collect)
    if not model_scores:
        raise DataError(f"{display_name(path)}: no words both models can score")
    return fit_weight(np.asarray(model_scores), np.asarray(ngram_scores))
