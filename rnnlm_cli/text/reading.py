"""Reading text the way every command does: files, `.gz` files or stdin, line by line.

Lines come back without their line end (LF and CRLF give the same text), a leading
UTF-8 byte-order mark is dropped, and invalid UTF-8 is either replaced and counted or,
with ``strict=True``, refused with the line number. A NUL byte marks binary data and is
always refused; other control characters are kept as text and counted.

Memory is bounded by ``MAX_LINE_BYTES``, never by the line: a longer line comes in
pieces (:func:`iter_segments`), each cut just after its last ASCII whitespace byte, so
no word is split and ``len(text.split())`` summed over the pieces is the line's word
count. Only a run of more than ``MAX_LINE_BYTES`` bytes without such whitespace is cut
inside a word, at a UTF-8 character boundary (its parts then count as words of their
own). Nothing is ever dropped: the pieces of a line joined together are the line.
"""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from rnnlm_cli.errors import DataError, InputMissingError

STDIN = "-"
MAX_LINE_BYTES = 1 << 20
"""Longest piece of a line read at once, in bytes."""
_MIN_LINE_BYTES = 16
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_REPLACEMENT = "\ufffd"
# Whitespace that str.split() separates words at; CR is left out so that a cut never
# falls between the CR and LF of a CRLF line end.
_CUT_AFTER = (b" ", b"\t", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x1f")
# C0 controls except TAB (LF never reaches the text, NUL is refused), and DEL. In UTF-8
# these bytes only ever stand for themselves, so counting bytes counts characters.
_CONTROL = bytes([*range(0x01, 0x09), *range(0x0A, 0x20), 0x7F])


@dataclass
class DecodeStats:
    """What reading a text found that the caller may want to report."""

    lines: int = 0
    invalid_lines: int = 0
    replaced_chars: int = 0
    control_chars: int = 0
    """C0 control characters other than TAB, and DEL, kept in the text as they are."""


MAX_DIGITS = 18
"""Most digits of an integer field in a text file (an id, a count, a rank, a distance): every
such value then fits a 64-bit integer, and a field of thousands of digits is refused by name
instead of reaching Python's limit on converting long digit strings."""


def natural(digits: str, where: str, label: str) -> int:
    """The value of ``digits`` (ASCII digits, already matched as such); DataError naming
    ``where`` and ``label`` when there are more than :data:`MAX_DIGITS` of them."""
    if len(digits) > MAX_DIGITS:
        raise DataError(f"{where}: {label} {digits[:12]}... has {len(digits):,} digits; at most {MAX_DIGITS}")
    return int(digits)


def display_name(path: str) -> str:
    return "stdin" if path == STDIN else path


def check_readable(path: str) -> None:
    """Fail early, with the exit code for a missing input, when ``path`` cannot be read."""
    if path == STDIN:
        return
    if os.path.isdir(path):
        raise InputMissingError(f"{path}: is a directory, expected a file")
    if not os.path.exists(path):
        raise InputMissingError(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise InputMissingError(f"{path}: permission denied")


def open_binary(path: str) -> BinaryIO:
    """Open a file, a gzip file (by its magic bytes, whatever its name) or stdin for reading bytes.

    The file is opened once: the magic bytes are peeked from the handle that then reads
    the data, so a pipe (``<(zcat ...)``, a FIFO) loses nothing to the sniffing.
    """
    check_readable(path)
    if path == STDIN:
        return sys.stdin.buffer
    handle = open(path, "rb")
    if handle.peek(2)[:2] == _GZIP_MAGIC:
        return _OwningGzipFile(handle)  # type: ignore[return-value]
    return handle


class _OwningGzipFile(gzip.GzipFile):
    """A gzip reader over an open handle, which it closes when it is closed itself."""

    def __init__(self, handle: BinaryIO) -> None:
        super().__init__(fileobj=handle, mode="rb")
        self._handle = handle

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._handle.close()


def iter_segments(path: str, strict: bool = False, stats: DecodeStats | None = None,
                  max_line_bytes: int | None = None) -> Iterator[tuple[str, bool]]:
    """Yield ``(text, ends_line)`` for each piece of each line of ``path``, in order.

    A line up to ``max_line_bytes`` (default :data:`MAX_LINE_BYTES`) bytes long is one
    piece with ``ends_line`` True; a longer one is several pieces, the last with
    ``ends_line`` True. An empty line is one empty piece.
    """
    limit = MAX_LINE_BYTES if max_line_bytes is None else max_line_bytes
    if limit < _MIN_LINE_BYTES:
        raise ValueError(f"max_line_bytes must be at least {_MIN_LINE_BYTES}")
    stats = stats if stats is not None else DecodeStats()
    name = display_name(path)
    stream = open_binary(path)
    readline = stream.readline
    held = b""  # the start of the current line's next piece, read but not yet delivered
    number = 0
    offset = 0  # bytes of the current line already delivered
    starting = True
    invalid = False
    try:
        while True:
            want = limit - len(held)
            chunk = readline(want)
            raw = held + chunk if held else chunk
            if not raw:
                if not starting:
                    yield "", True  # the text ended exactly where a piece was cut
                return
            complete = chunk.endswith(b"\n") or len(chunk) < want
            if starting:
                number += 1
                stats.lines += 1
                offset, invalid = 0, False
                if number == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
            if complete:
                held = b""
                if raw.endswith(b"\n"):
                    raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
                piece = raw
            else:
                cut = _cut(raw)
                piece, held = raw[:cut], raw[cut:]
            text, replaced = _decoded(piece, name, number, offset, strict, stats)
            if replaced and not invalid:
                stats.invalid_lines += 1
                invalid = True
            offset += len(piece)
            starting = complete
            yield text, complete
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{name}: damaged or truncated gzip data ({exc})") from exc
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def iter_lines(path: str, strict: bool = False, stats: DecodeStats | None = None) -> Iterator[str]:
    """Yield each line of ``path`` as text without its line end.

    A whole line is held in memory; for text that may hold very long lines (a corpus
    without line breaks), read :func:`iter_segments` instead.
    """
    parts: list[str] = []
    for text, ends_line in iter_segments(path, strict, stats):
        if not ends_line:
            parts.append(text)
        elif parts:
            parts.append(text)
            yield "".join(parts)
            parts = []
        else:
            yield text


def _decoded(piece: bytes, name: str, number: int, offset: int, strict: bool,
             stats: DecodeStats) -> tuple[str, bool]:
    """The text of one piece of line ``number`` (``offset`` bytes into it), and whether it held
    invalid UTF-8 (replaced; refused with ``strict``). A NUL byte is refused; other control
    characters are counted."""
    if b"\0" in piece:
        raise DataError(f"{name}:{number}: NUL byte: binary data, not text")
    kept = piece.translate(None, _CONTROL)
    if len(kept) != len(piece):
        stats.control_chars += len(piece) - len(kept)
    try:
        return piece.decode("utf-8"), False
    except UnicodeDecodeError as exc:
        return _replace_invalid(piece, exc, name, number, offset, strict, stats), True


def _cut(raw: bytes) -> int:
    """Where to end a piece of an over-long line: after its last whitespace, else at a character boundary."""
    cut = max(raw.rfind(space) for space in _CUT_AFTER) + 1
    if cut == 0:
        cut = _open_char_start(raw)
    if cut > 1 and raw[cut - 1] == 0x0D:
        cut -= 1  # keep a CR with the LF that may follow it
    return cut


def _open_char_start(raw: bytes) -> int:
    """``len(raw)``, or the start of a UTF-8 sequence at its end that the next bytes would complete."""
    for back in range(1, 5):
        byte = raw[-back]
        if byte < 0x80:
            break
        if byte >= 0xC0:
            length = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(raw) - back if length > back else len(raw)
    # An ASCII byte, or no lead byte in reach: not UTF-8 to keep together.
    return len(raw)


def _replace_invalid(raw: bytes, exc: UnicodeDecodeError, name: str, number: int, offset: int, strict: bool,
                     stats: DecodeStats) -> str:
    """Invalid UTF-8: refused under ``strict``, else decoded with replacements that are counted."""
    if strict:
        raise DataError(
            f"{name}:{number}: invalid UTF-8 at byte {offset + exc.start} (drop --strict to replace it)"
        ) from exc
    text = raw.decode("utf-8", errors="replace")
    # Count only the replacements decoding made, not U+FFFD characters already in the text.
    stats.replaced_chars += text.count(_REPLACEMENT) - raw.count(_REPLACEMENT.encode("utf-8"))
    return text
