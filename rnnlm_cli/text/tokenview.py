"""Token ids read in place from an open token file with ``pread``, never memory-mapped.

A memory map of a file that another process truncates raises SIGBUS at the next touch
of a lost page, and CPython cannot recover from it: the process dies, whatever it had
not saved is lost. Reading with ``pread`` instead turns the same event into a short
read, reported as :class:`TokenFileChangedError` (exit 66) naming the file, which a
caller can catch to save its state. The file stays open from :func:`open_ids` on, so a
file replaced by rename or deleted is still read whole; only a change in place is seen.
Every read also checks the ids against the vocabulary, so ids rewritten in place never
reach an embedding lookup.
"""

from __future__ import annotations

import operator
import os
import weakref
from typing import Any, Iterator

import numpy as np

from rnnlm_cli.errors import InputMissingError

BLOCK = 1 << 20
"""Ids read at a time by whole-view operations (max, iteration): bounded memory."""


class TokenFileChangedError(InputMissingError):
    """A token file that shrank or was rewritten in place while it was being read."""


class FileIds:
    """An open token file's ids: ``count`` ids of ``dtype`` from byte ``offset`` of descriptor ``fd``.

    Takes ownership of ``fd`` (closed when the object and all its views are gone).
    ``vocab_size`` bounds every id read.
    """

    def __init__(self, path: str, fd: int, dtype: np.dtype, offset: int, count: int, vocab_size: int) -> None:
        self.path = path
        self.fd = fd
        self.dtype = np.dtype(dtype)
        self.offset = offset
        self.count = count
        # Ids of this width cannot reach the vocabulary's size: nothing to check.
        self.vocab_size = vocab_size if vocab_size <= np.iinfo(self.dtype).max else None
        weakref.finalize(self, os.close, fd)

    def read_into(self, start: int, out: np.ndarray, check: bool = True) -> None:
        """Fill ``out`` (contiguous, of this file's dtype) with ids ``start .. start + len(out)``."""
        buffer = memoryview(out).cast("B")
        where = self.offset + start * self.dtype.itemsize
        done = 0
        while done < len(buffer):
            try:
                got = os.preadv(self.fd, [buffer[done:]], where + done)
            except OSError as exc:
                raise TokenFileChangedError(f"{self.path}: cannot read the token file ({exc.strerror}); "
                                            "check the disk, then run again") from exc
            if got == 0:
                raise TokenFileChangedError(
                    f"{self.path}: token file shrank while in use (another process truncated it?); "
                    "restore or re-create it, then run again")
            done += got
        if check and self.vocab_size is not None and len(out) and int(out.max()) >= self.vocab_size:
            raise TokenFileChangedError(
                f"{self.path}: token file changed while in use (id {int(out.max())} outside the vocabulary "
                f"of {self.vocab_size}; another process rewrote it?); restore or re-create it, then run again")


class TokenView:
    """Ids ``[start, stop)`` of a token file, read when used.

    Behaves as a read-only 1-D array for what training and inspection need: ``len``, an
    index, a slice (another view: nothing is read), comparison with a number, ``tolist``,
    ``astype``, ``max``, ``min`` and ``np.asarray``; each reads only the ids it covers.
    Anything else an array does, do on ``np.asarray(view[a:b])`` of the part you need.
    """

    ndim = 1
    __hash__ = None  # type: ignore[assignment]  # compares element-wise, like an array

    def __init__(self, ids: FileIds, start: int = 0, stop: int | None = None) -> None:
        self.ids = ids
        self.start = start
        self.stop = ids.count if stop is None else stop

    @property
    def dtype(self) -> np.dtype:
        return self.ids.dtype

    @property
    def path(self) -> str:
        return self.ids.path

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    @property
    def size(self) -> int:
        return len(self)

    def __len__(self) -> int:
        return self.stop - self.start

    def __repr__(self) -> str:
        return f"TokenView({self.path!r}, {self.start}:{self.stop}, dtype={self.dtype})"

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            begin, end, step = key.indices(len(self))
            if step != 1:
                return np.asarray(self)[key]
            return TokenView(self.ids, self.start + begin, self.start + max(begin, end))
        index = operator.index(key)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {key} is out of bounds for {len(self)} tokens")
        return self.read(index, 1)[0]

    def __setitem__(self, key: Any, value: Any) -> None:
        raise ValueError("token file ids are read-only")

    def read(self, begin: int, count: int) -> np.ndarray:
        """Ids ``begin .. begin + count`` of this view (clipped to its end), as a new array."""
        count = max(0, min(count, len(self) - begin))
        out = np.empty(count, dtype=self.dtype)
        self.ids.read_into(self.start + begin, out)
        return out

    def read_into(self, begin: int, out: np.ndarray) -> None:
        """Fill ``out`` with ids ``begin .. begin + len(out)`` of this view."""
        if begin < 0 or begin + len(out) > len(self):
            raise IndexError(f"ids {begin}..{begin + len(out)} are outside a view of {len(self)}")
        self.ids.read_into(self.start + begin, out)

    def blocks(self) -> Iterator[np.ndarray]:
        """The ids in consecutive arrays of at most :data:`BLOCK`."""
        for begin in range(0, len(self), BLOCK):
            yield self.read(begin, BLOCK)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.read(0, len(self))
        return array if dtype is None else array.astype(dtype, copy=False)

    def __iter__(self) -> Iterator[Any]:
        for block in self.blocks():
            yield from block

    def tolist(self) -> list[int]:
        return np.asarray(self).tolist()

    def astype(self, dtype: Any, **kwargs: Any) -> np.ndarray:
        return np.asarray(self).astype(dtype, **kwargs)

    def max(self) -> Any:
        return self._reduce(np.max, "max")

    def min(self) -> Any:
        return self._reduce(np.min, "min")

    def _reduce(self, reduce, name: str) -> Any:
        if not len(self):
            raise ValueError(f"{name} of an empty token view")
        return reduce([reduce(block) for block in self.blocks()]).astype(self.dtype)

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        return np.asarray(self) == other

    def __ne__(self, other: Any) -> Any:  # type: ignore[override]
        return np.asarray(self) != other
