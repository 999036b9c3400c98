"""Reading text the way every command does: files, `.gz` files or stdin, line by line.

Lines come back without their line end (LF and CRLF give the same text), a leading
UTF-8 byte-order mark is dropped, and invalid UTF-8 is either replaced and counted or,
with ``strict=True``, refused with the line number.
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
_BOM = b"\xef\xbb\xbf"
_REPLACEMENT = "\ufffd"


@dataclass
class DecodeStats:
    """What reading a text found that the caller may want to report."""

    lines: int = 0
    invalid_lines: int = 0
    replaced_chars: int = 0


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
    """Open a file, a gzip file (by its magic bytes, whatever its name) or stdin for reading bytes."""
    check_readable(path)
    if path == STDIN:
        return sys.stdin.buffer
    handle = open(path, "rb")
    if handle.peek(2)[:2] == b"\x1f\x8b":
        handle.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return handle


def iter_lines(path: str, strict: bool = False, stats: DecodeStats | None = None) -> Iterator[str]:
    """Yield each line of ``path`` as text without its line end."""
    stats = stats if stats is not None else DecodeStats()
    name = display_name(path)
    stream = open_binary(path)
    try:
        for number, raw in enumerate(_raw_lines(stream, name), start=1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            if raw.endswith(b"\n"):
                raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
            stats.lines += 1
            yield _decode(raw, name, number, strict, stats)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _raw_lines(stream: BinaryIO, name: str) -> Iterator[bytes]:
    try:
        yield from stream
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{name}: damaged or truncated gzip data ({exc})") from exc


def _decode(raw: bytes, name: str, number: int, strict: bool, stats: DecodeStats) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if strict:
            raise DataError(
                f"{name}:{number}: invalid UTF-8 at byte {exc.start} (drop --strict to replace it)"
            ) from exc
    text = raw.decode("utf-8", errors="replace")
    stats.invalid_lines += 1
    # Count only the replacements decoding made, not U+FFFD characters already in the text.
    stats.replaced_chars += text.count(_REPLACEMENT) - raw.count(_REPLACEMENT.encode("utf-8"))
    return text
