"""Scoring text with a trained model: perplexity in SRILM's terms, and validation loss.

Every line is scored as a sentence (:mod:`rnnlm_cli.token_scoring`): its tokens and the
line end are predicted, in the ``stream`` context with the state carried across lines (the
literature's continuous-stream perplexity), in the ``sentence`` context each line afresh.
Token probabilities are then summed per word (:mod:`rnnlm_cli.word_scoring`).

SRILM's conventions (``ngram -ppl``): ``logprob`` is the log10 probability of all
scored words and line ends; a word outside a word-level vocabulary is an OOV and its
probability is left out of ``logprob`` and of both denominators (the model still reads it
as ``<unk>``; ``unk=True`` scores it as ``<unk>`` instead). A word of probability zero
(possible only in a mix with an n-gram model) is a zeroprob, left out the same way.
``ppl = 10 ** (-logprob / (words - oovs - zeroprobs + sentences))`` and
``ppl1 = 10 ** (-logprob / (words - oovs - zeroprobs))``. With character, byte or subword
tokenizers ``logprob`` sums the pieces of each word, so ``ppl`` is per word.

A word tokenizer reads a literal ``<eos>`` in the text as ``<unk>`` (an OOV: text never
fakes a line end) and a literal ``<unk>`` as the unknown-word token (not an OOV); both are
counted in ``literal_specials``. A line longer than :data:`rnnlm_cli.textio.MAX_LINE_BYTES`
is read in pieces and still scored as one sentence, without holding all its tokens.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from rnnlm_cli.batching import bptt_streams, iter_bptt
from rnnlm_cli.errors import DataError
from rnnlm_cli.models import detach_state
from rnnlm_cli.textio import DecodeStats, display_name, iter_segments
from rnnlm_cli.scoring_config import CONTEXTS
from rnnlm_cli.token_scoring import PieceEncoder, score_sentences, score_stream
from rnnlm_cli.word_scoring import LN10, NgramMix, WordScore, piece_words

__all__ = ["CONTEXTS", "EvalResult", "TextScorer", "Totals", "evaluate_file", "stream_loss",
           "stream_loss_sum"]


@torch.no_grad()
def stream_loss(model: torch.nn.Module, tokens: np.ndarray, batch_size: int, bptt: int,
                device: torch.device) -> float:
    """Mean negative log-likelihood (nats per token) of a token stream, state carried."""
    total, count = stream_loss_sum(model, tokens, batch_size, bptt, device)
    return total / max(count, 1)


@torch.no_grad()
def stream_loss_sum(model: torch.nn.Module, tokens: np.ndarray, batch_size: int, bptt: int,
                    device: torch.device) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) and the number of tokens it covers."""
    model.eval()
    batch_size = max(1, min(batch_size, (len(tokens) - 1) // 2))
    streams = bptt_streams(tokens, batch_size)
    state = model.init_state(batch_size, device=device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for x, y in iter_bptt(streams, bptt):
        x, y = x.to(device), y.to(device)
        scores, state = model(x, state, targets=y)  # (T, B)
        total -= scores.sum().double()
        count += y.numel()
        state = detach_state(state)
    return float(total.item()), count


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
        return _ppl(self.logprob, self.words - self.oovs - self.zeroprobs + self.sentences)

    @property
    def ppl1(self) -> float:
        return _ppl(self.logprob, self.words - self.oovs - self.zeroprobs)


def _ppl(logprob: float, denominator: int) -> float:
    if denominator <= 0:
        return math.nan
    exponent = -logprob / denominator
    return 10.0 ** exponent if exponent < 300 else math.inf


@dataclass
class EvalResult(Totals):
    """Totals of a scored text, in SRILM's terms (log10), and what reading it found."""

    file: str = ""
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
    """Word tokenizer only: words spelled ``<eos>`` or ``<unk>``, read as ``<unk>``."""
    sentence_logprobs: list[float] | None = field(default=None, repr=False)

    @property
    def token_ppl(self) -> float:
        return math.exp(self.token_nll / self.tokens) if self.tokens else math.nan

    def add_words(self, scored: Sequence[WordScore]) -> None:
        self.add(scored)
        for word in scored:
            if not word.oov:
                self.tokens += word.tokens
                self.token_nll -= word.model_log10 * LN10

    def to_dict(self) -> dict[str, Any]:
        encoded = max(self.encoded_tokens, 1)
        return {
            "file": self.file, "sentences": self.sentences, "words": self.words, "oovs": self.oovs,
            "zeroprobs": self.zeroprobs, "logprob": self.logprob, "ppl": self.ppl, "ppl1": self.ppl1,
            "tokens": self.tokens, "token_ppl": self.token_ppl, "encoded_tokens": self.encoded_tokens,
            "unk_tokens": self.unk_tokens, "unk_rate": self.unk_tokens / encoded,
            "byte_fallback_tokens": self.byte_tokens, "byte_fallback_rate": self.byte_tokens / encoded,
            "invalid_lines": self.invalid_lines, "control_chars": self.control_chars,
            "literal_specials": self.literal_specials,
        }


def evaluate_file(
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
    cache=None,
    dynamic=None,
    mix: NgramMix | None = None,
    chunk_tokens: int = 256,
    batch_tokens: int = 4096,
    on_words: Callable[[str, list[WordScore], bool], None] | None = None,
    on_sentence: Callable[[int, float], None] | None = None,
) -> EvalResult:
    """Score every line of ``path`` (a file, a ``.gz`` file or ``-``).

    ``on_words(text, words, ends_line)`` gets each piece of text and its scored words
    (``</s>`` last at a line end) and ``on_sentence(count, log10_prob)`` each line's total,
    as soon as they are scored, in input order, so callers can stream them. ``eager``
    scores each line as soon as it is read (no read-ahead: a coprocess gets its answer).
    ``unk`` scores OOV words as ``<unk>``; ``cache`` (:class:`rnnlm_cli.cache.NeuralCache`)
    and ``dynamic`` (:class:`rnnlm_cli.dynamic.DynamicEvaluation`) need the stream context,
    which they carry across lines; ``mix`` mixes each word with an n-gram model.
    """
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}")
    if context != "stream" and (cache is not None or dynamic is not None):
        raise ValueError("the cache and dynamic evaluation score a stream: use context 'stream'")
    model.eval()
    stats = DecodeStats()
    result = EvalResult(file=display_name(path), sentence_logprobs=[] if per_sentence else None)
    encoder = PieceEncoder(tokenizer)
    pieces = encoder.pieces(iter_segments(path, strict=strict, stats=stats))
    if context == "stream":
        scored = score_stream(model, pieces, device, chunk_tokens, eager=eager, cache=cache, dynamic=dynamic)
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
    result.literal_specials = counts.literal_specials
    result.invalid_lines = stats.invalid_lines
    result.control_chars = stats.control_chars
    if result.sentences == 0:
        raise DataError(f"{result.file}: no text to score (empty input)")
    return result


class TextScorer:
    """Scores texts one sentence each, from a fresh state, independently of each other.

    The same text always gets the same score: recent answers are remembered (up to
    ``memory`` texts), so batching never makes two copies differ in the last bits.
    Used for n-best rescoring; OOV words are scored as ``<unk>`` unless ``unk`` is False.
    """

    def __init__(self, model, tokenizer, device, *, unk: bool = True, mix: NgramMix | None = None,
                 batch_tokens: int = 4096, chunk_tokens: int = 256, memory: int = 100_000) -> None:
        self._model = model.eval()
        self._tokenizer = tokenizer
        self._device = device
        self._unk = unk
        self._mix = mix
        self._batch_tokens = batch_tokens
        self._chunk_tokens = chunk_tokens
        self._memory = memory
        self._known: OrderedDict[str, Totals] = OrderedDict()

    def score(self, texts: Sequence[str]) -> list[Totals]:
        """Each text's totals (one sentence each; ``logprob`` is its log10 score)."""
        new = [text for text in dict.fromkeys(texts) if text not in self._known]
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
        answers = []
        for text in texts:
            self._known.move_to_end(text)
            answers.append(self._known[text])
        while len(self._known) > max(self._memory, len(texts)):
            self._known.popitem(last=False)
        return answers
