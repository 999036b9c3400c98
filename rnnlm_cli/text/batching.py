"""Token ids -> parallel streams -> truncated-BPTT segments, without copying the corpus.

The corpus is cut into ``B`` streams of ``L + 1`` tokens that overlap by one token (a
stream's last token is the next one's first), so every token but the first is a target
exactly once within the ``B * L`` predictions::

    tokens  a b c d e f g h i j k l m      (N = 13, B = 3, L = (N - 1) // B = 4)

    stream 0  a b c d e          segment 1 (bptt = 3)   segment 2
    stream 1  e f g h i          x: a b c | y: b c d    x: d | y: e
    stream 2  i j k l m                ...                   ...

Each segment is read in column order: ``x[t, b]`` is stream ``b`` at time ``t``, and the
next segment continues every stream where the last stopped, so the hidden state carried
from one segment to the next is the state of the same stream.

The streams of an in-memory array are a strided view of it. Those of a token file
(:class:`rnnlm_cli.text.tokenview.TokenView`) are :class:`FileStreams`: each stream is read
ahead in runs with ``pread``, so a file truncated under training is a
:class:`rnnlm_cli.text.tokenview.TokenFileChangedError`, not a SIGBUS from a memory map.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from rnnlm_cli.errors import DataError
from rnnlm_cli.text.tokenview import TokenView

READ_AHEAD = 1 << 18
"""Ids :class:`FileStreams` reads ahead, over all streams together (at least one segment
per stream): a few ``pread`` calls per hundred steps, at most 1 MiB of memory."""


class FileStreams:
    """The (B, L + 1) streams of a token file, read ahead in column runs.

    Supports what :func:`iter_bptt` and :func:`segment_count` use: ``shape`` and
    ``streams[:, begin:end]``, an array (B, end - begin) valid until the next such call.
    """

    ndim = 2

    def __init__(self, tokens: TokenView, batch_size: int, length: int) -> None:
        self.tokens = tokens
        self.shape = (batch_size, length + 1)
        self._length = length
        self._first = 0  # the stream position of the buffer's first column
        self._buffer = np.empty((batch_size, 0), dtype=tokens.dtype)

    def __getitem__(self, key) -> np.ndarray:
        rows, columns = key if isinstance(key, tuple) and len(key) == 2 else (None, None)
        if rows != slice(None) or not isinstance(columns, slice) or columns.step not in (None, 1):
            raise TypeError("FileStreams supports only streams[:, begin:end]")
        begin, end, _ = columns.indices(self.shape[1])
        end = max(begin, end)
        if begin < self._first or end > self._first + self._buffer.shape[1]:
            self._fill(begin, end)
        return self._buffer[:, begin - self._first:end - self._first]

    def _fill(self, begin: int, end: int) -> None:
        batch_size, width = self.shape
        run = min(max(end - begin, READ_AHEAD // batch_size), width - begin)
        buffer = np.empty((batch_size, run), dtype=self.tokens.dtype)
        for row in range(batch_size):
            self.tokens.read_into(row * self._length + begin, buffer[row])
        buffer.flags.writeable = False
        self._first, self._buffer = begin, buffer


def bptt_streams(tokens: np.ndarray | TokenView, batch_size: int) -> np.ndarray | FileStreams:
    """The (B, L + 1) streams of ``tokens``: stream b is ``tokens[b*L : b*L + L + 1]``.

    A read-only view for an array; :class:`FileStreams` for a token file's ids.
    """
    if tokens.ndim != 1:
        raise ValueError("tokens must be 1-D")
    length = (len(tokens) - 1) // batch_size
    if length < 1:
        raise DataError(f"corpus too short for batch size {batch_size}: {len(tokens)} tokens "
                        f"give each stream no target (use a smaller --batch-size)")
    if isinstance(tokens, TokenView):
        return FileStreams(tokens, batch_size, length)
    step = tokens.strides[0]
    return np.lib.stride_tricks.as_strided(tokens, shape=(batch_size, length + 1),
                                           strides=(length * step, step), writeable=False)


def iter_bptt(streams: np.ndarray | FileStreams, bptt: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y), each an int64 tensor (T, B) with ``y[t] = x[t + 1]`` along each stream.

    ``T == bptt`` except for a shorter last segment. ``start`` is the stream position of
    the first input token (a multiple of ``bptt`` to resume an interrupted epoch).
    Only the current segment is copied out of the streams.
    """
    if bptt < 1 or start < 0:
        raise ValueError("bptt must be positive and start non-negative")
    length = streams.shape[1] - 1
    for begin in range(start, length, bptt):
        steps = min(bptt, length - begin)
        window = streams[:, begin:begin + steps + 1].T  # (T+1, B), a view
        block = torch.from_numpy(np.ascontiguousarray(window, dtype=np.int64))
        yield block[:-1], block[1:]


def segment_count(streams: np.ndarray | FileStreams, bptt: int, start: int = 0) -> int:
    """How many segments :func:`iter_bptt` yields."""
    remaining = streams.shape[1] - 1 - start
    return max(0, -(-remaining // bptt))


def holdout_split(tokens: np.ndarray | TokenView, eos_id: int, fraction: float,
                  max_tokens: int) -> tuple[np.ndarray | TokenView, np.ndarray | TokenView]:
    """Views (train, valid): valid is about the last ``min(fraction * N, max_tokens)`` tokens.

    The cut moves forward to just after an ``<eos>`` so that validation starts at a line.
    """
    total = len(tokens)
    wanted = min(int(fraction * total), max_tokens)
    cut = total - wanted
    if wanted >= 2 and cut >= 1:
        after_eos = np.flatnonzero(np.asarray(tokens[cut - 1:]) == eos_id)  # at most max_tokens read
        cut = cut + int(after_eos[0]) if len(after_eos) else total
    if cut < 2 or total - cut < 2:
        raise DataError(f"corpus of {total} tokens is too short to hold out validation lines "
                        "from its end; give a validation file with --valid")
    return tokens[:cut], tokens[cut:]
