"""The binary token file: a corpus as token ids, read by memory-mapping it.

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
file is enough to train on.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from types import TracebackType
from typing import Any, Sequence

import numpy as np

from rnnlm_cli.atomic import atomic_path
from rnnlm_cli.errors import DataError, InputMissingError
from rnnlm_cli.tokenizers import Tokenizer, fingerprint, tokenizer_from_dict

MAGIC = b"RNNLMTOK"
VERSION = 1
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sIIQQQ")
_DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}
_RECREATE = "re-create it with `rnnlm tokenize`"
# Ids checked against the vocabulary when opening: a block at each end and a few between.
_CHECK_BLOCK = 65536
_CHECK_MIDDLE = 14
# Metadata fields written by rnnlm_cli.corpus, with their JSON types (True: may be null).
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
    """An opened token file: ``tokens`` is a read-only memory map, ``metadata`` its JSON."""

    def __init__(self, path: str, tokens: np.ndarray, metadata: dict[str, Any], tokenizer: Tokenizer) -> None:
        self.path = path
        self.tokens = tokens
        self.metadata = metadata
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.tokens)


def is_token_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts with the token file magic (False for anything unreadable)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except (OSError, ValueError):  # ValueError: a path with a NUL byte
        return False


def open_token_file(path: str | os.PathLike) -> TokenFile:
    """Map a token file for reading; DataError, saying what to do, when it is not a usable one.

    Everything but the ids is checked in full. The ids are checked against the vocabulary
    in blocks (both ends and a few between), so a file of at most 65536 ids is checked whole.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputMissingError(f"{path}: is a directory, expected a token file")
    try:
        with open(path, "rb") as handle:
            header = handle.read(HEADER_SIZE)
            size = os.fstat(handle.fileno()).st_size
            _, _, itemsize, count, offset, length = _check_header(path, header, size)
            handle.seek(offset)
            blob = handle.read(length)
    except FileNotFoundError:
        raise InputMissingError(f"{path}: no such token file") from None
    except PermissionError:
        raise InputMissingError(f"{path}: permission denied") from None
    except (OSError, ValueError) as exc:
        raise InputMissingError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if len(blob) != length:
        raise DataError(f"{path}: truncated token file (it changed while being read); {_RECREATE}")
    metadata = _parse_metadata(path, blob)
    try:
        tokenizer = tokenizer_from_dict(metadata.get("tokenizer"))
    except DataError as exc:
        raise DataError(f"{path}: bad tokenizer in token file ({exc}); {_RECREATE}") from exc
    _check_fingerprint(path, metadata, tokenizer)
    dtype = _DTYPES[itemsize]
    if count:
        tokens = np.memmap(path, dtype=dtype, mode="r", offset=HEADER_SIZE, shape=(count,))
    else:
        tokens = np.zeros(0, dtype=dtype)
    _check_ids(path, tokens, tokenizer.vocab_size)
    return TokenFile(path, tokens, metadata, tokenizer)


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


def _check_ids(path: str, tokens: np.ndarray, vocab_size: int) -> None:
    """Sample the ids (both ends and a few blocks between): every one must be in the vocabulary."""
    count = len(tokens)
    starts = {0, max(count - _CHECK_BLOCK, 0)}
    starts.update(int(s) for s in np.linspace(0, max(count - _CHECK_BLOCK, 0), _CHECK_MIDDLE + 2))
    for start in sorted(starts):
        block = tokens[start:start + _CHECK_BLOCK]
        if len(block) and int(block.max()) >= vocab_size:
            raise DataError(f"{path}: damaged token file (id {int(block.max())} outside the "
                            f"vocabulary of {vocab_size}); {_RECREATE}")
