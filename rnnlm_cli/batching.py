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
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from rnnlm_cli.errors import DataError


def bptt_streams(tokens: np.ndarray, batch_size: int) -> np.ndarray:
    """A read-only (B, L + 1) view of ``tokens``: stream b is ``tokens[b*L : b*L + L + 1]``."""
    if tokens.ndim != 1:
        raise ValueError("tokens must be 1-D")
    length = (len(tokens) - 1) // batch_size
    if length < 1:
        raise DataError(f"corpus too short for batch size {batch_size}: {len(tokens)} tokens "
                        f"give each stream no target (use a smaller --batch-size)")
    step = tokens.strides[0]
    return np.lib.stride_tricks.as_strided(tokens, shape=(batch_size, length + 1),
                                           strides=(length * step, step), writeable=False)


def iter_bptt(streams: np.ndarray, bptt: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y), each an int64 tensor (T, B) with ``y[t] = x[t + 1]`` along each stream.

    ``T == bptt`` except for a shorter last segment. ``start`` is the stream position of
    the first input token (a multiple of ``bptt`` to resume an interrupted epoch).
    Only the current segment is copied out of the (memory-mapped) streams.
    """
    if bptt < 1 or start < 0:
        raise ValueError("bptt must be positive and start non-negative")
    length = streams.shape[1] - 1
    for begin in range(start, length, bptt):
        steps = min(bptt, length - begin)
        window = streams[:, begin:begin + steps + 1].T  # (T+1, B), a view
        block = torch.from_numpy(np.ascontiguousarray(window, dtype=np.int64))
        yield block[:-1], block[1:]


def segment_count(streams: np.ndarray, bptt: int, start: int = 0) -> int:
    """How many segments :func:`iter_bptt` yields."""
    remaining = streams.shape[1] - 1 - start
    return max(0, -(-remaining // bptt))


def holdout_split(tokens: np.ndarray, eos_id: int, fraction: float, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Views (train, valid): valid is about the last ``min(fraction * N, max_tokens)`` tokens.

    The cut moves forward to just after an ``<eos>`` so that validation starts at a line.
    """
    total = len(tokens)
    wanted = min(int(fraction * total), max_tokens)
    cut = total - wanted
    if wanted >= 2 and cut >= 1:
        after_eos = np.flatnonzero(tokens[cut - 1:] == eos_id)
        cut = cut + int(after_eos[0]) if len(after_eos) else total
    if cut < 2 or total - cut < 2:
        raise DataError(f"corpus of {total} tokens is too short to hold out validation lines "
                        "from its end; give a validation file with --valid")
    return tokens[:cut], tokens[cut:]
