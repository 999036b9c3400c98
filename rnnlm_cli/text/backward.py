"""Reading each line right to left: the tokenizer of a backward model (``rnnlm train --reverse``).

A backward model predicts a line's last token first, from the line's end, and its first
token last, then the line end: for the words ``w1 ... wN`` of a line it reads
``<eos> wN ... w1`` to predict ``wN ... w1 <eos>``, as Kaldi's backward RNNLM
(``rnnlm/lmrescore_back.sh``) reads each sentence reversed. Lines keep their order; only the
tokens within each line are reversed, never the line end.

"Right to left" is the order of the line's tokens under the forward tokenizer, reversed:
words for a word tokenizer, characters for char, UTF-8 bytes for byte (a character's bytes
come last byte first), and for sentencepiece the pieces the forward model would cut, in
reverse order (the segmentation is the forward one; only the order changes).

:class:`BackwardTokenizer` wraps any forward tokenizer, so every path from text to ids
(training, token files, ``eval``, n-best rescoring, dynamic evaluation) reads right to left
with nothing special done by its caller. Its :meth:`~BackwardTokenizer.encode_line` keeps
each token's word index, so per-word scores come back in reading order, each word with the
cost the backward model gave it. Its description is the forward one's with ``"reverse":
true``: checkpoints and token-file headers record the direction, and a description without
the key (every one written before the option existed) reads left to right.

A line must be read to its end before its first token is known, so a backward tokenizer
holds each line whole (:func:`whole_lines`), however long: the forward tokenizers read a
line longer than :data:`rnnlm_cli.text.reading.MAX_LINE_BYTES` in pieces.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

from rnnlm_cli.text.tokenizer_base import EncodedLine, StreamingDecoder, Tokenizer

LEFT_TO_RIGHT = "left to right"
RIGHT_TO_LEFT = "right to left"


class BackwardTokenizer:
    """``forward``'s tokens of each line in reverse order; the line end stays at the end."""

    reverse = True

    def __init__(self, forward: Tokenizer) -> None:
        if forward.reverse:
            raise ValueError("the tokenizer to reverse must read left to right")
        self.forward = forward
        self.kind = forward.kind
        self.vocab_size = forward.vocab_size
        self.eos_id = forward.eos_id
        self.unk_id = forward.unk_id

    # What a kind's own tokenizer offers besides the protocol (an AttributeError where it has none).
    @property
    def pieces(self) -> list[str]:
        return self.forward.pieces  # type: ignore[attr-defined]

    @property
    def index(self) -> dict[str, int]:
        return self.forward.index  # type: ignore[attr-defined]

    @property
    def symbols(self) -> dict[str, Any] | None:
        return self.forward.symbols  # type: ignore[attr-defined]

    def is_byte(self, token_id: int) -> bool:
        return self.forward.is_byte(token_id)  # type: ignore[attr-defined]

    def encode(self, line: str) -> list[int]:
        return self.forward.encode(line)[::-1]

    def encode_batch(self, lines: Sequence[str]) -> list[list[int]]:
        return [ids[::-1] for ids in self.forward.encode_batch(lines)]

    def encode_line(self, line: str) -> EncodedLine:
        # Word indices travel with their tokens: a word's score is still that word's.
        encoded = self.forward.encode_line(line)
        return EncodedLine(encoded.ids[::-1], encoded.word_index[::-1], encoded.words, encoded.oov)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ids in this tokenizer's order, each line back in reading order."""
        return self.forward.decode(reading_order(ids, self.eos_id))

    def piece(self, token_id: int) -> str:
        return self.forward.piece(token_id)

    def streaming_decoder(self) -> StreamingDecoder:
        return _LineDecoder(self.forward)

    def to_dict(self) -> dict[str, Any]:
        return {**self.forward.to_dict(), "reverse": True}


class _LineDecoder:
    """Holds a line's ids until its end: only then is its first word (the last read) known."""

    def __init__(self, forward: Tokenizer) -> None:
        self._forward = forward
        self._line: list[int] = []

    def push(self, token_id: int) -> str:
        if token_id != self._forward.eos_id:
            self._forward.piece(token_id)  # an id outside the vocabulary is refused now, as forward
            self._line.append(token_id)
            return ""
        decoder = self._forward.streaming_decoder()
        text = "".join(decoder.push(token) for token in reversed(self._line)) + decoder.push(token_id)
        self._line = []
        return text

    def flush(self) -> str:
        decoder = self._forward.streaming_decoder()
        text = "".join(decoder.push(token) for token in reversed(self._line)) + decoder.flush()
        self._line = []
        return text


def reading_order(ids: Iterable[int], eos_id: int) -> list[int]:
    """Ids with each line's tokens (between line ends) reversed; the line ends stay in place.
    Its own inverse: it turns reading order into a backward model's and back."""
    out: list[int] = []
    line: list[int] = []
    for token in ids:
        if token == eos_id:
            out.extend(reversed(line))
            out.append(token)
            line = []
        else:
            line.append(token)
    out.extend(reversed(line))
    return out


def directed(tokenizer: Tokenizer, reverse: bool) -> Tokenizer:
    """``tokenizer`` reading right to left when ``reverse`` (as it is if it already does);
    otherwise unchanged: a backward one stays backward."""
    if reverse and not tokenizer.reverse:
        return BackwardTokenizer(tokenizer)
    return tokenizer


def direction(tokenizer: Tokenizer) -> str:
    """"right to left" or "left to right", as logs, summaries and exports say it."""
    return RIGHT_TO_LEFT if tokenizer.reverse else LEFT_TO_RIGHT


def whole_lines(segments: Iterable[tuple[str, bool]]) -> Iterator[tuple[str, bool]]:
    """``(text, ends_line)`` pieces of lines (:func:`rnnlm_cli.text.reading.iter_segments`)
    joined into whole lines: what a backward tokenizer must see. The last piece of a text may
    end no line (a token file cut short); it comes as it is."""
    parts: list[str] = []
    for text, ends_line in segments:
        if not ends_line:
            parts.append(text)
            continue
        if parts:
            parts.append(text)
            text, parts = "".join(parts), []
        yield text, True
    if parts:
        yield "".join(parts), False


def line_segments(tokenizer: Tokenizer, segments: Iterable[tuple[str, bool]]) -> Iterable[tuple[str, bool]]:
    """The pieces of lines as ``tokenizer`` must read them: whole lines for a backward one."""
    return whole_lines(segments) if tokenizer.reverse else segments
