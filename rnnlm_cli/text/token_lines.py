"""Lines of text as token ids or pieces, and lines of ids back to text: what ``rnnlm tokenize
--print`` and ``--decode`` write, one output line per input line whatever pieces a long line is
read in (:func:`rnnlm_cli.text.reading.iter_segments`)."""

from __future__ import annotations

from typing import TextIO

import numpy as np

from rnnlm_cli.errors import DataError
from rnnlm_cli.text.backward import line_segments
from rnnlm_cli.text.corpus import count_literal_specials, input_warnings
from rnnlm_cli.text.reading import DecodeStats, display_name, iter_segments
from rnnlm_cli.text.tokenfile import is_token_file, open_token_file


class LinePrinter:
    """Writes the ids or pieces of each input line to ``out`` as one output line, whatever pieces
    it came in."""

    def __init__(self, tok, print_as: str, out: TextIO) -> None:
        self._out = out
        piece = tok.piece
        self._render = (lambda ids: " ".join(map(str, ids))) if print_as == "ids" else (
            lambda ids: " ".join(piece(i) for i in ids))
        self._open = False  # part of the current line is already written

    def write(self, ids: list[int], ends_line: bool) -> None:
        text = self._render(ids)
        if self._open and text:
            text = " " + text
        if ends_line:
            self._out.write(text + "\n")
            self._open = False
        elif text:
            self._out.write(text)
            self._open = True


def print_lines(tok, source: str, print_as: str, out: TextIO, *, strict: bool = False,
                name: str | None = None) -> list[str]:
    """Write each line of ``source`` (text, or the token file that stdin was encoded into) to
    ``out`` as its ids or pieces (``print_as``); return the warnings reading it gave.

    ``name`` is the text as the user gave it (``source`` may be a copy of a pipe)."""
    name = source if name is None else name
    printer = LinePrinter(tok, print_as, out)
    if is_token_file(source):
        # stdin was consumed while encoding: print the lines back from the token file.
        tokens = open_token_file(source).tokens
        for start in range(0, len(tokens), 1 << 20):
            chunk = tokens[start:start + (1 << 20)]
            begin = 0
            for end in np.flatnonzero(chunk == tok.eos_id).tolist():
                printer.write(chunk[begin:end].tolist(), True)
                begin = end + 1
            if begin < len(chunk):
                printer.write(chunk[begin:].tolist(), False)
        return []
    stats = DecodeStats()
    literal = 0
    word_kind = tok.kind == "word"
    for text, ends_line in line_segments(tok, iter_segments(source, strict, stats)):
        ids = tok.encode(text)
        if word_kind and tok.unk_id in ids:
            literal += count_literal_specials(text)
        printer.write(ids, ends_line)
    if stats.lines == 0:
        raise DataError(f"{display_name(name)}: empty input")
    return input_warnings(display_name(name), invalid_lines=stats.invalid_lines,
                          replaced_chars=stats.replaced_chars, control_chars=stats.control_chars,
                          literal_specials=literal)


def decode_lines(tok, source: str, out: TextIO, *, strict: bool = False) -> None:
    """Write each line of ids in ``source`` to ``out`` as text; a line that arrives in pieces is
    decoded as it streams."""
    name = display_name(source)
    stats = DecodeStats()
    decoder = None  # the streaming decoder of a line that came in pieces
    held = ""  # line ends decoded at the end of what was written so far; dropped at the line's end
    for text, ends_line in iter_segments(source, strict, stats):
        number = stats.lines
        try:
            ids = [int(field) for field in text.split()]
        except ValueError:
            raise DataError(f"{name}:{number}: expected whitespace-separated token ids") from None
        bad = [i for i in ids if not 0 <= i < tok.vocab_size]
        if bad:
            raise DataError(f"{name}:{number}: id {bad[0]} is outside the vocabulary (0..{tok.vocab_size - 1})")
        if decoder is None and ends_line:
            out.write(tok.decode(ids).rstrip("\n") + "\n")
            continue
        if decoder is None:
            decoder = tok.streaming_decoder()
        decoded = held + "".join(decoder.push(i) for i in ids) + (decoder.flush() if ends_line else "")
        kept = decoded.rstrip("\n")
        held = decoded[len(kept):]
        out.write(kept + "\n" if ends_line else kept)
        if ends_line:
            decoder, held = None, ""
    if stats.lines == 0:
        raise DataError(f"{name}: empty input")
