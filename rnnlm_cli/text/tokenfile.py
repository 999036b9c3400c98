"""The binary token file: a corpus as token ids, read in place (see :mod:`rnnlm_cli.text.tokenview`).

Layout (all integers little-endian)::

    offset  size  field
         0     8  magic b"RNNLMTOK"
         8     4  u32 format version (1)
        12     4  u32 itemsize: 2 (uint16 ids, vocabulary <= 65535) or 4 (uint32)
        16     8  u64 token count N
        24     8  u64 metadata offset (= 64 + N * itemsize)
        32     8  u64 metadata length in bytes
        40    24  zero padding
        64  N*is  the token ids, one line's tokens followed by <eos> (id 0), line after line
       ...        UTF-8 JSON metadata: {"tokenizer": {...}, "fingerprint": ..., "lines": ...,
                  "words": ..., "tokens": ..., "source": file name, ...}

The writer streams ids after a placeholder header and rewrites the header at the end, so
the count need not be known up front; the tokenizer travels inside the file, so a token
file is enough to train on. Opening one checks everything, every id included (one pass,
block by block), and keeps the file open: the ids are then read with ``pread`` as they
are used, never memory-mapped, so a file truncated under a run is an error, not SIGBUS.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import struct
from types import TracebackType
from typing import Any, Sequence

import numpy as np

from rnnlm_cli.files.atomic import atomic_path
from rnnlm_cli.errors import DataError, InputMissingError
from rnnlm_cli.files.spool import needs_spooling
from rnnlm_cli.text.tokenizers import Tokenizer, fingerprint, tokenizer_from_dict
from rnnlm_cli.text.tokenview import FileIds, TokenFileChangedError, TokenView

__all__ = ["HEADER_SIZE", "MAGIC", "TokenFile", "TokenFileChangedError", "TokenFileWriter", "TokenView",
           "is_token_file", "itemsize_for", "open_token_file"]

MAGIC = b"RNNLMTOK"
VERSION = 1
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sIIQQQ")
_DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}
_RECREATE = "re-create it with `rnnlm tokenize`"
# Ids checked against the vocabulary at a time when opening: 4 MiB at most.
_CHECK_BLOCK = 1 << 20
# Metadata fields written by rnnlm_cli.text.corpus, with their JSON types (True: may be null).
# The tokenizer is checked by rebuilding it; unknown fields are kept as they are.
_METADATA_TYPES: dict[str, tuple[type, bool]] = {
    "fingerprint": (str, False), "source": (str, False), "rnnlm_version": (str, False),
    "lines": (int, False), "words": (int, False), "tokens": (int, False), "oov_tokens": (int, True),
    "invalid_lines": (int, False), "replaced_chars": (int, False),
}


def itemsize_for(vocab_size: int) -> int:
    """Bytes per id: 2 while every id fits in uint16, else 4."""
    return 2 if vocab_size <= 65535 else 4


class TokenFileWriter:
    """Writes a token file at ``path``; it appears there only after :meth:`close` succeeds.

    Use as a context manager: ``write`` ids in any number of calls, then ``close(metadata)``.
    Leaving the block with an error, or without calling ``close``, leaves no file behind.
    """

    def __init__(self, path: str | os.PathLike, itemsize: int = 2) -> None:
        if itemsize not in _DTYPES:
            raise ValueError(f"itemsize must be 2 or 4, got {itemsize}")
        self.path = os.fspath(path)
        self.itemsize = itemsize
        self.count = 0
        self._dtype = _DTYPES[itemsize]
        self._limit = 1 << (8 * itemsize)
        self._stack = contextlib.ExitStack()
        self._handle: Any = None
        self._closed = False

    def __enter__(self) -> TokenFileWriter:
        temp = self._stack.enter_context(atomic_path(self.path))
        self._handle = self._stack.enter_context(open(temp, "wb"))
        self._handle.write(bytes(HEADER_SIZE))
        return self

    def write(self, ids: np.ndarray | Sequence[int]) -> None:
        array = np.asarray(ids)
        if array.size == 0:
            return
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise ValueError("token ids must be a 1-D sequence of integers")
        if int(array.min()) < 0 or int(array.max()) >= self._limit:
            raise ValueError(f"token id out of range for itemsize {self.itemsize}")
        self._handle.write(array.astype(self._dtype, copy=False).tobytes())
        self.count += array.size

    def close(self, metadata: dict[str, Any]) -> None:
        """Append the metadata, fill in the header and put the file in place."""
        blob = json.dumps(metadata, ensure_ascii=False, sort_keys=True).encode("utf-8")
        offset = HEADER_SIZE + self.count * self.itemsize
        self._handle.write(blob)
        self._handle.seek(0)
        self._handle.write(_HEADER.pack(MAGIC, VERSION, self.itemsize, self.count, offset, len(blob)))
        self._closed = True
        self._stack.close()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._closed:
            return
        if exc_type is None:
            error = RuntimeError("TokenFileWriter left without close(metadata); nothing was written")
            self._stack.__exit__(RuntimeError, error, None)
            raise error
        self._stack.__exit__(exc_type, exc, tb)


class TokenFile:
    """An opened token file: ``tokens`` its ids (a :class:`TokenView`), ``metadata`` its JSON."""

    def __init__(self, path: str, tokens: TokenView, metadata: dict[str, Any], tokenizer: Tokenizer) -> None:
        self.path = path
        self.tokens = tokens
        self.metadata = metadata
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.tokens)


def is_token_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file that starts with the token file magic.

    A pipe, stdin ("-") or device is never looked into, since reading it would take its
    first bytes from whoever reads it next: it is not a token file unless it is first
    copied to one (:func:`rnnlm_cli.files.spool.spooled`). False for anything unreadable.
    """
    if needs_spooling(path):
        return False
    try:
        fd = _open_regular(os.fspath(path))
    except (InputMissingError, DataError):
        return False
    try:
        return os.pread(fd, len(MAGIC), 0) == MAGIC
    except OSError:
        return False
    finally:
        os.close(fd)


def open_token_file(path: str | os.PathLike) -> TokenFile:
    """Open a token file for reading; DataError, saying what to do, when it is not a usable one.

    Everything is checked in full, every id against the vocabulary included. A file that
    is not a regular file (a pipe: spool it first) is refused with InputMissingError.
    """
    path = os.fspath(path)
    fd = _open_regular(path)
    ids = None
    try:
        try:
            size = os.fstat(fd).st_size
            header = os.pread(fd, HEADER_SIZE, 0)
            _, _, itemsize, count, offset, length = _check_header(path, header, size)
            blob = os.pread(fd, length, offset)
        except OSError as exc:
            raise InputMissingError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if len(blob) != length:
            raise DataError(f"{path}: truncated token file (it changed while being read); {_RECREATE}")
        metadata = _parse_metadata(path, blob)
        try:
            tokenizer = tokenizer_from_dict(metadata.get("tokenizer"))
        except DataError as exc:
            raise DataError(f"{path}: bad tokenizer in token file ({exc}); {_RECREATE}") from exc
        _check_fingerprint(path, metadata, tokenizer)
        ids = FileIds(path, fd, _DTYPES[itemsize], HEADER_SIZE, count, tokenizer.vocab_size)  # owns fd now
    finally:
        if ids is None:
            os.close(fd)
    _check_ids(path, ids, tokenizer.vocab_size)
    return TokenFile(path, TokenView(ids), metadata, tokenizer)


def _open_regular(path: str) -> int:
    """A read descriptor for ``path``, refused unless it is a regular file; nothing is read."""
    if os.path.isdir(path):
        raise InputMissingError(f"{path}: is a directory, expected a token file")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below unread.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputMissingError(f"{path}: no such token file") from None
    except PermissionError:
        raise InputMissingError(f"{path}: permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
        raise InputMissingError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputMissingError(f"{path}: a token file must be a regular file (it is read in place, "
                                "not streamed); copy it to disk first")
    return fd


def _check_header(path: str, header: bytes, size: int) -> tuple[bytes, int, int, int, int, int]:
    if len(header) < len(MAGIC) or header[: len(MAGIC)] != MAGIC:
        raise DataError(f"{path}: not an rnnlm token file; create one with `rnnlm tokenize`")
    if len(header) < HEADER_SIZE:
        raise DataError(f"{path}: truncated token file (header incomplete); {_RECREATE}")
    fields = _HEADER.unpack_from(header)
    _, version, itemsize, count, offset, length = fields
    if version != VERSION:
        raise DataError(f"{path}: token file format version {version} is not supported "
                        f"(this rnnlm reads version {VERSION}); {_RECREATE}")
    if itemsize not in _DTYPES:
        raise DataError(f"{path}: damaged token file (item size {itemsize}); {_RECREATE}")
    if offset != HEADER_SIZE + count * itemsize or offset + length != size:
        raise DataError(f"{path}: truncated or damaged token file (header promises "
                        f"{offset + length} bytes, file has {size}); {_RECREATE}")
    return fields


def _parse_metadata(path: str, blob: bytes) -> dict[str, Any]:
    try:
        metadata = json.loads(blob.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, absurd nesting or numbers
        raise DataError(f"{path}: damaged token file (metadata is not JSON); {_RECREATE}") from exc
    if not isinstance(metadata, dict):
        raise DataError(f"{path}: damaged token file (metadata is not a JSON object); {_RECREATE}")
    for key, value in metadata.items():
        expected = _METADATA_TYPES.get(key)
        if expected is None:
            continue
        kind, nullable = expected
        if value is None and nullable:
            continue
        # bool is an int to Python, but never a count.
        if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, int) and value < 0):
            raise DataError(f"{path}: damaged token file (metadata field {key!r} has the wrong type); {_RECREATE}")
    return metadata


def _check_fingerprint(path: str, metadata: dict[str, Any], tokenizer: Tokenizer) -> None:
    stored = metadata.get("fingerprint")
    if stored is not None and stored != fingerprint(tokenizer):
        raise DataError(f"{path}: damaged token file (the tokenizer does not match its fingerprint); {_RECREATE}")


def _check_ids(path: str, ids: FileIds, vocab_size: int) -> None:
    """Every id must be in the vocabulary: one pass over the file, a block at a time."""
    if ids.vocab_size is None:
        return
    buffer = np.empty(min(_CHECK_BLOCK, ids.count), dtype=ids.dtype)
    for start in range(0, ids.count, _CHECK_BLOCK):
        block = buffer[: min(_CHECK_BLOCK, ids.count - start)]
        ids.read_into(start, block, check=False)
        if int(block.max()) >= vocab_size:
            first = int(np.argmax(block >= vocab_size))
            raise DataError(f"{path}: damaged token file (id {int(block[first])} outside the vocabulary of "
                            f"{vocab_size}, at position {start + first}); {_RECREATE}")
