"""Token-level scoring: the natural-log probability of every token of a text, in order.

Every line is scored as a sentence: its tokens and the end-of-line token ``<eos>`` are
predicted, the first from the context ``<eos>`` (the end of the previous line) stands for.
Two contexts:

* ``stream``: one continuous token stream with the state carried across lines, fed to
  the model ``chunk_tokens`` at a time. The evaluation-time methods live here: a neural
  cache mixes a pointer over past features into each prediction, and dynamic evaluation
  adapts the weights on each chunk *after* scoring it.
* ``sentence``: every line from a fresh state, many lines per batch.

A line longer than the read limit arrives in pieces (:func:`rnnlm_cli.text.reading.iter_segments`);
its tokens run on across the pieces, and memory holds one chunk and the pieces it touches,
never the whole line. A backward model's tokenizer (:mod:`rnnlm_cli.text.backward`) reads each
line whole, right to left; each target keeps its word, so per-word scores stay in reading order.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import torch

from rnnlm_cli.text.backward import line_segments
from rnnlm_cli.text.corpus import count_literal_specials
from rnnlm_cli.text.tokenizer_base import UNK
from rnnlm_cli.models.lm import detach_state
from rnnlm_cli.score.dynamic import score_and_adapt
from rnnlm_cli.score.dynamic_fit import StreamFit


@dataclass
class EncodeCounts:
    """What encoding saw, for the report: literal specials and tokens the vocabulary lacked."""

    literal_specials: int = 0
    """Word tokenizer only: words spelled ``<eos>``, read as ``<unk>``."""
    tokens: int = 0
    """Tokens encoded, line ends excluded."""
    unk_tokens: int = 0
    """Tokens that are ``<unk>`` (OOV words with a word tokenizer, unknown characters with char)."""
    byte_tokens: int = 0
    """Sentencepiece only: byte-fallback pieces (characters spelled as their UTF-8 bytes)."""
    blank_lines: int = 0
    """Lines skipped as blank (:meth:`PieceEncoder.pieces` with ``skip_blank_lines``)."""


BLANK = " \t\r\n\f\v"
"""C's ``isspace()`` in the C locale: a line of only these is blank to SRILM."""


@dataclass
class Piece:
    """One piece of an encoded line (the whole line unless it is longer than the read limit)."""

    text: str
    context: int  # the token before the first target: <eos> at a line start
    targets: list[int]  # the piece's tokens, then <eos> if it ends its line
    word_index: list[int]  # per target: its word in text.split(); len(words) for <eos>
    oov: list[bool]  # per word: scored as <unk> because the vocabulary lacks it
    last: bool
    logprobs: list[float] = field(default_factory=list)  # per target, filled by the scorer
    backward: bool = False  # a backward model's: targets run right to left, each word given those after it

    def inputs(self, start: int, stop: int) -> list[int]:
        """What the model reads to predict ``targets[start:stop]``: each target's predecessor."""
        if start == 0:
            return [self.context] + self.targets[: max(stop - 1, 0)]
        return self.targets[start - 1: stop - 1]


class PieceEncoder:
    """Encodes each text piece into a :class:`Piece`; a line's tokens run on across its pieces."""

    def __init__(self, tokenizer, unk_words_are_oov: bool = False) -> None:
        self._tokenizer = tokenizer
        self._unk_words_are_oov = unk_words_are_oov and tokenizer.kind == "word"
        """Text decoded from a token file: a word ``<unk>`` there stands for one the encoding did not know."""
        self._previous = tokenizer.eos_id
        self.counts = EncodeCounts()
        is_byte = getattr(tokenizer, "is_byte", None)
        self._is_byte = is_byte if tokenizer.kind == "sentencepiece" and is_byte is not None else None

    def encode(self, text: str, ends_line: bool, context: int | None = None) -> Piece:
        """``context`` overrides the running one (sentence scoring starts every line from <eos>)."""
        tokenizer = self._tokenizer
        encoded = tokenizer.encode_line(text)
        targets = encoded.ids
        counts = self.counts
        counts.tokens += len(targets)
        if tokenizer.unk_id is not None:
            unknown = targets.count(tokenizer.unk_id)
            counts.unk_tokens += unknown
            if unknown and tokenizer.kind == "word":
                counts.literal_specials += count_literal_specials(text)
        if self._is_byte is not None:
            counts.byte_tokens += sum(1 for token in targets if self._is_byte(token))
        # Tokens past the last word (a line of whitespace) are charged to the line end.
        words = encoded.words
        word_index = [min(index, words) for index in encoded.word_index]
        if ends_line:
            targets.append(tokenizer.eos_id)
            word_index.append(words)
        oov = list(encoded.oov)
        if self._unk_words_are_oov:
            oov = [flag or word == UNK for flag, word in zip(oov, text.split())]
        piece = Piece(text=text, context=self._previous if context is None else context, targets=targets,
                      word_index=word_index, oov=oov, last=ends_line, backward=tokenizer.reverse)
        if targets:
            self._previous = targets[-1]
        return piece

    def pieces(self, segments: Iterable[tuple[str, bool]], skip_blank_lines: bool = False) -> Iterator[Piece]:
        """``skip_blank_lines``: no piece at all for a line that is empty or only :data:`BLANK`.
        A backward tokenizer gets each line whole, in one piece (it reads the line from its end)."""
        segments = line_segments(self._tokenizer, segments)
        if skip_blank_lines:
            segments = self._without_blank_lines(segments)
        for text, ends_line in segments:
            yield self.encode(text, ends_line)

    def _without_blank_lines(self, segments: Iterable[tuple[str, bool]]) -> Iterator[tuple[str, bool]]:
        # SRILM's File::getline (misc/src/File.cc), which LM::pplFile reads lines through, drops
        # a line of only isspace() characters: ngram -ppl never sees it, so it is no sentence,
        # has no </s> to predict and prints nothing at -debug 1 or 2.
        held: list[str] = []  # the line's pieces so far, all blank (a line longer than the read limit)
        blank = True  # nothing but BLANK seen on this line yet
        for text, ends_line in segments:
            if blank and not text.strip(BLANK):
                if ends_line:
                    self.counts.blank_lines += 1
                    held = []
                else:
                    held.append(text)
                continue
            for earlier in held:
                yield earlier, False
            held, blank = [], ends_line
            yield text, ends_line


class _Open:
    """A piece being scored and how many of its targets are still out."""

    __slots__ = ("piece", "left")

    def __init__(self, piece: Piece) -> None:
        self.piece = piece
        self.left = len(piece.targets)


class StreamScorer:
    """Feeds pieces as one continuous token stream, ``chunk_tokens`` at a time, state carried.

    ``eager`` scores each line as soon as its end arrives (answers a line before the next
    is read). ``cache`` (:class:`rnnlm_cli.score.cache.NeuralCache`) mixes a pointer over past
    features into each prediction; ``dynamic`` (:class:`rnnlm_cli.score.dynamic.DynamicEvaluation`,
    or :class:`rnnlm_cli.score.dynamic_fit.StreamFit` to fit its rate on the stream's first
    tokens) takes a gradient step on each chunk once it is scored, so a prediction only ever
    benefits from text before it. ``lines_alone`` starts every line from a fresh state (the
    sentence context) while the cache and the adapted weights carry on across lines.
    """

    def __init__(self, model, device, chunk_tokens: int, *, eager: bool = False, cache=None,
                 dynamic=None, state=None, lines_alone: bool = False) -> None:
        """``state``: the state the stream starts from (None: a fresh one)."""
        self._model = model
        self._device = device
        self._chunk = chunk_tokens
        self._eager = eager
        self._cache = cache
        self._fitting = dynamic if isinstance(dynamic, StreamFit) else None
        self._dynamic = None if self._fitting is not None else dynamic
        self._lines_alone = lines_alone
        self._at_line_start = True
        self._fresh = False  # the next chunk starts from a fresh state at a line start
        self._state = model.init_state(1, device=device) if state is None else state
        self._open: deque[_Open] = deque()
        self._inputs: list[int] = []
        self._targets: list[int] = []
        self._owners: list[_Open] = []

    def feed(self, piece: Piece) -> Iterator[Piece]:
        """Take ``piece``; yield the leading pieces now fully scored, ``logprobs`` filled."""
        if self._lines_alone and self._at_line_start:
            if self._inputs:
                self._run()
            self._state = self._model.init_state(1, device=self._device)
            self._fresh = True
        self._at_line_start = piece.last
        entry = _Open(piece)
        self._open.append(entry)
        start = 0
        while start < len(piece.targets):
            take = min(self._chunk - len(self._inputs), len(piece.targets) - start)
            self._inputs.extend(piece.inputs(start, start + take))
            self._targets.extend(piece.targets[start:start + take])
            self._owners.extend([entry] * take)
            start += take
            if len(self._inputs) == self._chunk:
                self._run()
        if self._eager and piece.last and self._inputs:
            self._run()
        yield from self._done()

    def finish(self) -> Iterator[Piece]:
        if self._inputs:
            self._run()
        yield from self._done()
        if self._open:
            raise RuntimeError("pieces left unscored")

    def _run(self) -> None:
        x = torch.tensor(self._inputs, dtype=torch.long, device=self._device).unsqueeze(1)  # (T, 1)
        y = torch.tensor(self._targets, dtype=torch.long, device=self._device)  # (T,)
        if self._dynamic is None:
            before = self._state
            with torch.no_grad():
                logprobs = self._mixed(*self._model_scores(x, y), y)
            if self._fitting is not None and self._fitting.collect(x, y, before, self._fresh):
                self._dynamic, self._fitting = self._fitting.finish(self._model), None
        else:
            logprobs = self._adapted(x, y)
        for owner, value in zip(self._owners, logprobs.detach().double().tolist()):
            owner.left -= 1
            owner.piece.logprobs.append(value)
        self._inputs, self._targets, self._owners = [], [], []
        self._fresh = False

    def _adapted(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Score the chunk segment by segment, a step after each (:func:`score_and_adapt`)."""
        logprobs, features, self._state = score_and_adapt(self._model, self._dynamic, x, y, self._state)
        return self._mixed(features, logprobs, y)

    def _model_scores(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The features (T, D) and the model's natural-log probability (T,) of each target;
        the state moves on."""
        features, state = self._model.hidden_states(x, self._state)  # (T, 1, D)
        self._state = detach_state(state)
        return features[:, 0], self._model.target_logprobs(features[:, 0], y)

    def _mixed(self, features: torch.Tensor, logprobs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The targets' log-probabilities with the cache mixed in, when there is one."""
        if self._cache is None:
            return logprobs
        return self._cache.mix(features, y, logprobs)

    def _done(self) -> Iterator[Piece]:
        while self._open and self._open[0].left == 0:
            yield self._open.popleft().piece


def score_stream(model, pieces: Iterable[Piece], device, chunk_tokens: int, *, eager: bool = False,
                 cache=None, dynamic=None, state=None, lines_alone: bool = False) -> Iterator[Piece]:
    """Yield pieces in order with ``logprobs`` filled, the state carried across every line
    (from ``state``; None: a fresh one), or every line from a fresh state with ``lines_alone``."""
    scorer = StreamScorer(model, device, chunk_tokens, eager=eager, cache=cache, dynamic=dynamic, state=state,
                          lines_alone=lines_alone)
    for piece in pieces:
        yield from scorer.feed(piece)
    yield from scorer.finish()


SORT_WINDOW_BATCHES = 64
"""Sentence scoring sorts the lines of a window this many batches long by length, so a
batch holds lines of about one length: in file order, WikiText-2's mix of headings,
blank lines and paragraphs makes three quarters of a padded batch padding."""


def score_sentences(model, pieces: Iterable[Piece], device, batch_tokens: int, chunk_tokens: int,
                    *, eager: bool = False) -> Iterator[Piece]:
    """Yield pieces in order with ``logprobs`` filled, each line scored from a fresh state.

    Lines are scored many at once, padded to the longest: a batch grows while its padded
    size stays within ``batch_tokens``, which bounds the (T, N, V) logits in memory. Up to
    :data:`SORT_WINDOW_BATCHES` batches' worth of lines are read ahead and batched by
    length, then yielded in their order. A line longer than ``batch_tokens`` (or arriving
    in pieces) is scored alone, in chunks, from a fresh state. ``eager`` scores every line
    as it arrives (one line per batch).
    """
    window: list[Piece] = []
    window_tokens = 0
    limit = 1 if eager else SORT_WINDOW_BATCHES * batch_tokens
    alone: StreamScorer | None = None
    for piece in pieces:
        if alone is None and piece.last and len(piece.targets) <= batch_tokens:
            window.append(piece)
            window_tokens += len(piece.targets)
            if window_tokens >= limit:
                yield from _score_window(model, window, device, batch_tokens)
                window, window_tokens = [], 0
            continue
        yield from _score_window(model, window, device, batch_tokens)
        window, window_tokens = [], 0
        if alone is None:
            alone = StreamScorer(model, device, chunk_tokens)
        yield from alone.feed(piece)
        if piece.last:
            yield from alone.finish()
            alone = None
    yield from _score_window(model, window, device, batch_tokens)


def _score_window(model, window: list[Piece], device, batch_tokens: int) -> list[Piece]:
    """Score whole lines longest first, in batches of at most ``batch_tokens`` padded
    tokens; return them in their own order."""
    batch: list[Piece] = []
    for piece in sorted(window, key=lambda p: len(p.targets), reverse=True):
        # Longest first: the batch's first line sets its padded length.
        if batch and len(batch[0].targets) * (len(batch) + 1) > batch_tokens:
            _score_batch(model, batch, device)
            batch = []
        batch.append(piece)
    if batch:
        _score_batch(model, batch, device)
    return window


def padded_batch(batch: list[Piece]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (T, N) of whole sentence pieces, one per column, padded with 0
    after each piece's last token (where it never reaches a real target)."""
    length = max(len(p.targets) for p in batch)
    x = torch.zeros(length, len(batch), dtype=torch.long)
    y = torch.zeros(length, len(batch), dtype=torch.long)
    for column, piece in enumerate(batch):
        x[: len(piece.targets), column] = torch.tensor(piece.inputs(0, len(piece.targets)))
        y[: len(piece.targets), column] = torch.tensor(piece.targets)
    return x, y


class RecentAnswers:
    """The answers for the last ``memory`` texts a sentence scorer was asked about.

    The same text then always gets the same score: batching never makes two copies of a
    hypothesis differ in their last bits, and a repeated one is not scored again.
    """

    def __init__(self, memory: int) -> None:
        self._memory = memory
        self._known: OrderedDict[str, Any] = OrderedDict()

    def missing(self, texts: Sequence[str]) -> list[str]:
        """The distinct texts without an answer, in first-seen order."""
        return [text for text in dict.fromkeys(texts) if text not in self._known]

    def __setitem__(self, text: str, answer: Any) -> None:
        self._known[text] = answer

    def answers(self, texts: Sequence[str]) -> list[Any]:
        """Each text's answer; then the oldest are forgotten beyond ``memory`` (never these)."""
        found = []
        for text in texts:
            self._known.move_to_end(text)
            found.append(self._known[text])
        while len(self._known) > max(self._memory, len(texts)):
            self._known.popitem(last=False)
        return found


@torch.no_grad()
def _score_batch(model, batch: list[Piece], device) -> None:
    x, y = padded_batch(batch)
    logprobs, _ = model(x.to(device), model.init_state(len(batch), device=device), targets=y.to(device))  # (T, N)
    logprobs = logprobs.t().double().cpu()  # (N, T)
    for column, piece in enumerate(batch):
        piece.logprobs.extend(logprobs[column, : len(piece.targets)].tolist())
