"""Scoring text with a trained model: perplexity in SRILM's terms, and validation loss.

Every line is scored as a sentence: its tokens and the end-of-line token ``<eos>``
are predicted, the first from the context ``<eos>`` (the end of the previous line)
stands for. In the default ``stream`` context the hidden state carries across lines,
as in the literature's continuous-stream perplexity; in ``sentence`` context every
line starts afresh.

SRILM's conventions (``ngram -ppl``): ``logprob`` is the log10 probability of all
scored tokens; a word outside a word-level vocabulary is an OOV and its probability
is left out of ``logprob`` and of both denominators (the model still reads it as
``<unk>``). ``ppl = 10 ** (-logprob / (words - oovs + sentences))`` and
``ppl1 = 10 ** (-logprob / (words - oovs))``. With character, byte or subword
tokenizers ``logprob`` sums the pieces of each word, so ``ppl`` is per word.

A word tokenizer reads a literal ``<eos>`` in the text as ``<unk>`` (an OOV: text never
fakes a line end) and a literal ``<unk>`` as the unknown-word token (not an OOV); both are
counted in ``literal_specials``. A line longer than :data:`rnnlm_cli.textio.MAX_LINE_BYTES`
is read in pieces and still scored as one sentence, without holding all its tokens.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from rnnlm_cli.batching import bptt_streams, iter_bptt
from rnnlm_cli.corpus import count_literal_specials
from rnnlm_cli.errors import DataError
from rnnlm_cli.models import detach_state
from rnnlm_cli.textio import DecodeStats, display_name, iter_segments

LN10 = math.log(10.0)
CONTEXTS = ("stream", "sentence")


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
        logits, state = model(x, state)
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="sum").double()
        count += y.numel()
        state = detach_state(state)
    return float(total.item()), count


@dataclass
class EvalResult:
    """Totals of a scored text, in SRILM's terms (log10)."""

    file: str
    sentences: int = 0
    words: int = 0
    oovs: int = 0
    zeroprobs: int = 0
    logprob: float = 0.0
    tokens: int = 0
    """Tokens predicted, <eos> included (OOV words' tokens excluded)."""
    token_nll: float = 0.0
    """Sum of natural-log losses over those tokens."""
    invalid_lines: int = 0
    control_chars: int = 0
    """C0 control characters other than TAB, and DEL, read as ordinary text."""
    literal_specials: int = 0
    """Word tokenizer only: words spelled ``<eos>`` or ``<unk>``, read as ``<unk>``."""
    sentence_logprobs: list[float] | None = field(default=None, repr=False)

    @property
    def ppl(self) -> float:
        return _ppl(self.logprob, self.words - self.oovs - self.zeroprobs + self.sentences)

    @property
    def ppl1(self) -> float:
        return _ppl(self.logprob, self.words - self.oovs - self.zeroprobs)

    @property
    def token_ppl(self) -> float:
        return math.exp(self.token_nll / self.tokens) if self.tokens else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "sentences": self.sentences, "words": self.words, "oovs": self.oovs,
            "zeroprobs": self.zeroprobs, "logprob": self.logprob, "ppl": self.ppl, "ppl1": self.ppl1,
            "tokens": self.tokens, "token_ppl": self.token_ppl, "invalid_lines": self.invalid_lines,
            "control_chars": self.control_chars, "literal_specials": self.literal_specials,
        }


def _ppl(logprob: float, denominator: int) -> float:
    if denominator <= 0:
        return math.nan
    exponent = -logprob / denominator
    return 10.0 ** exponent if exponent < 300 else math.inf


@dataclass
class _Piece:
    """One piece of an encoded line (the whole line unless it is longer than the read limit)."""

    context: int  # the token before the first target: <eos> at a line start
    targets: list[int]  # the piece's tokens, then <eos> if it ends its line
    counted: list[bool]  # False for tokens of OOV words
    words: int
    oovs: int
    last: bool

    def inputs(self, start: int, stop: int) -> list[int]:
        """What the model reads to predict ``targets[start:stop]``: each target's predecessor."""
        if start == 0:
            return [self.context] + self.targets[: max(stop - 1, 0)]
        return self.targets[start - 1: stop - 1]


def _pieces(segments: Iterable[tuple[str, bool]], tokenizer, result: EvalResult) -> Iterator[_Piece]:
    """Encode each piece of each line; the line's tokens run on across its pieces."""
    previous = tokenizer.eos_id
    for text, ends_line in segments:
        piece = _encode_piece(tokenizer, text, ends_line, previous, result)
        if piece.targets:
            previous = piece.targets[-1]
        yield piece


def _encode_piece(tokenizer, text: str, ends_line: bool, context: int, result: EvalResult) -> _Piece:
    encoded = tokenizer.encode_line(text)
    counted = [not encoded.oov[w] for w in encoded.word_index]
    targets = encoded.ids
    if ends_line:
        targets.append(tokenizer.eos_id)
        counted.append(True)
    if tokenizer.kind == "word" and tokenizer.unk_id in targets:
        result.literal_specials += count_literal_specials(text)
    return _Piece(context=context, targets=targets, counted=counted, words=encoded.words,
                  oovs=sum(encoded.oov), last=ends_line)


def evaluate_file(
    model: torch.nn.Module,
    tokenizer,
    path: str,
    device: torch.device,
    *,
    context: str = "stream",
    strict: bool = False,
    per_sentence: bool = False,
    chunk_tokens: int = 256,
    batch_tokens: int = 4096,
    on_sentence: Callable[[int, float], None] | None = None,
) -> EvalResult:
    """Score every line of ``path`` (a file, a ``.gz`` file or ``-``).

    ``on_sentence(count, log10_prob)`` is called for each line as soon as it is scored,
    in input order, so callers can stream per-line scores without holding them. A line
    longer than the read limit arrives in pieces and is still one sentence, scored in
    chunks of ``chunk_tokens`` so that memory never holds the whole line.
    """
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}")
    model.eval()
    stats = DecodeStats()
    result = EvalResult(file=display_name(path), sentence_logprobs=[] if per_sentence else None)
    pieces = _pieces(iter_segments(path, strict=strict, stats=stats), tokenizer, result)
    if context == "stream":
        scored = _score_stream(model, pieces, device, chunk_tokens)
    else:
        scored = _score_sentences(model, pieces, device, batch_tokens, chunk_tokens)
    sentence_nll = 0.0
    for piece, counted_nll in scored:
        sentence_nll += counted_nll
        result.words += piece.words
        result.oovs += piece.oovs
        result.tokens += sum(piece.counted)
        result.token_nll += counted_nll
        result.logprob -= counted_nll / LN10
        if not piece.last:
            continue
        result.sentences += 1
        if result.sentence_logprobs is not None:
            result.sentence_logprobs.append(-sentence_nll / LN10)
        if on_sentence is not None:
            on_sentence(result.sentences, -sentence_nll / LN10)
        sentence_nll = 0.0
    result.invalid_lines = stats.invalid_lines
    result.control_chars = stats.control_chars
    if result.sentences == 0:
        raise DataError(f"{result.file}: no text to score (empty input)")
    return result


class _Open:
    """A piece being scored: the sum of its counted losses and how many targets are still out."""

    __slots__ = ("piece", "nll", "left")

    def __init__(self, piece: _Piece) -> None:
        self.piece = piece
        self.nll = 0.0
        self.left = len(piece.targets)


class _StreamScorer:
    """Feeds pieces as one continuous token stream, ``chunk_tokens`` at a time, state carried.

    Memory holds one chunk and the pieces it touches, never a whole line.
    """

    def __init__(self, model, device, chunk_tokens: int) -> None:
        self._model = model
        self._device = device
        self._chunk = chunk_tokens
        self._state = model.init_state(1, device=device)
        self._open: deque[_Open] = deque()
        self._inputs: list[int] = []
        self._targets: list[int] = []
        self._counted: list[bool] = []
        self._owners: list[_Open] = []

    def feed(self, piece: _Piece) -> Iterator[tuple[_Piece, float]]:
        """Take ``piece``; yield (piece, counted nll) for the leading pieces now fully scored."""
        entry = _Open(piece)
        self._open.append(entry)
        start = 0
        while start < len(piece.targets):
            take = min(self._chunk - len(self._inputs), len(piece.targets) - start)
            self._inputs.extend(piece.inputs(start, start + take))
            self._targets.extend(piece.targets[start:start + take])
            self._counted.extend(piece.counted[start:start + take])
            self._owners.extend([entry] * take)
            start += take
            if len(self._inputs) == self._chunk:
                self._run()
        yield from self._done()

    def finish(self) -> Iterator[tuple[_Piece, float]]:
        if self._inputs:
            self._run()
        yield from self._done()
        if self._open:
            raise RuntimeError("pieces left unscored")

    @torch.no_grad()
    def _run(self) -> None:
        x = torch.tensor(self._inputs, dtype=torch.long, device=self._device).unsqueeze(1)  # (T, 1)
        y = torch.tensor(self._targets, dtype=torch.long, device=self._device)  # (T,)
        logits, self._state = self._model(x, self._state)  # (T, 1, V)
        nll = torch.nn.functional.cross_entropy(logits[:, 0].float(), y, reduction="none").tolist()
        for owner, value, keep in zip(self._owners, nll, self._counted):
            owner.left -= 1
            if keep:
                owner.nll += value
        self._inputs, self._targets, self._counted, self._owners = [], [], [], []

    def _done(self) -> Iterator[tuple[_Piece, float]]:
        while self._open and self._open[0].left == 0:
            entry = self._open.popleft()
            yield entry.piece, entry.nll


def _score_stream(model, pieces: Iterator[_Piece], device, chunk_tokens: int):
    """Yield (piece, counted nll) in order, the state carried across every line."""
    scorer = _StreamScorer(model, device, chunk_tokens)
    for piece in pieces:
        yield from scorer.feed(piece)
    yield from scorer.finish()


def _score_sentences(model, pieces: Iterator[_Piece], device, batch_tokens: int, chunk_tokens: int):
    """Yield (piece, counted nll) in order, each line scored from a fresh state.

    Lines are scored many at once, padded to the longest: a batch grows while its padded
    size stays within ``batch_tokens``, which bounds the (T, N, V) logits in memory. A line
    longer than that (or arriving in pieces) is scored alone, in chunks, from a fresh state.
    """
    batch: list[_Piece] = []
    longest = 0
    alone: _StreamScorer | None = None
    for piece in pieces:
        if alone is None and piece.last and len(piece.targets) <= batch_tokens:
            grown = max(longest, len(piece.targets))
            if batch and grown * (len(batch) + 1) > batch_tokens:
                yield from _score_batch(model, batch, device)
                batch, grown = [], len(piece.targets)
            batch.append(piece)
            longest = grown
            continue
        if batch:
            yield from _score_batch(model, batch, device)
            batch, longest = [], 0
        if alone is None:
            alone = _StreamScorer(model, device, chunk_tokens)
        yield from alone.feed(piece)
        if piece.last:
            yield from alone.finish()
            alone = None
    if batch:
        yield from _score_batch(model, batch, device)


@torch.no_grad()
def _score_batch(model, batch: list[_Piece], device):
    length = max(len(p.targets) for p in batch)
    x = torch.zeros(length, len(batch), dtype=torch.long)
    y = torch.zeros(length, len(batch), dtype=torch.long)
    for column, piece in enumerate(batch):
        x[: len(piece.targets), column] = torch.tensor(piece.inputs(0, len(piece.targets)))
        y[: len(piece.targets), column] = torch.tensor(piece.targets)
    # Padding comes after each line's last token, so it never affects real targets.
    logits, _ = model(x.to(device), model.init_state(len(batch), device=device))  # (T, N, V)
    nll = torch.nn.functional.cross_entropy(
        logits.float().permute(1, 2, 0), y.t().to(device), reduction="none").cpu()  # (N, T)
    for column, piece in enumerate(batch):
        values = nll[column, : len(piece.targets)].tolist()
        yield piece, float(sum(n for n, keep in zip(values, piece.counted) if keep))
