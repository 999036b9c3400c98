"""Validation loss as training uses it: mean nats per token over a token stream, state carried.

It reads the token ids a run already holds, so training, resume and promotion need nothing
of the text-scoring stack in :mod:`rnnlm_cli.score` (SRILM counts, word pieces, OOVs).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from rnnlm_cli.device import synchronize
from rnnlm_cli.models.lm import detach_state
from rnnlm_cli.text.batching import bptt_streams, iter_bptt


@torch.no_grad()
def stream_loss(model: torch.nn.Module, tokens: np.ndarray, batch_size: int, bptt: int,
                device: torch.device) -> float:
    """Mean negative log-likelihood (nats per token) of a token stream, state carried."""
    total, count = stream_loss_sum(model, tokens, batch_size, bptt, device)
    return total / max(count, 1)


@torch.no_grad()
def stream_loss_sum(model: torch.nn.Module, tokens: np.ndarray, batch_size: int, bptt: int,
                    device: torch.device, on_progress: Callable[[int, int], None] | None = None) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) and the number of tokens it covers;
    ``on_progress(done, total)`` hears of each segment scored, in tokens."""
    model.eval()
    batch_size = max(1, min(batch_size, (len(tokens) - 1) // 2))
    streams = bptt_streams(tokens, batch_size)
    state = model.init_state(batch_size, device=device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count, expected = 0, (streams.shape[1] - 1) * batch_size
    for x, y in iter_bptt(streams, bptt):
        x, y = x.to(device), y.to(device)
        scores, state = model(x, state, targets=y)  # (T, B)
        total -= scores.sum().double()
        count += y.numel()
        state = detach_state(state)
        if on_progress is not None:
            on_progress(count, expected)
    return float(total.item()), count


MERGED_CHUNK_ELEMENTS = 1 << 24
"""Most log-probabilities held at once by :func:`merged_loss_sum` (64 MiB of float32)."""


@torch.no_grad()
def merged_loss_sum(model: torch.nn.Module, tokens: np.ndarray, batch_size: int, bptt: int,
                    device: torch.device, merged: np.ndarray) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of a token stream, state carried, in which the
    entries flagged in ``merged`` (one flag per vocabulary entry) are one event: a target
    among them scores the model's probability of all of them together. Two models of
    different vocabularies scored so, each with the entries the other lacks merged (and
    ``<unk>``), predict the same events at every position."""
    model.eval()
    batch_size = max(1, min(batch_size, (len(tokens) - 1) // 2))
    streams = bptt_streams(tokens, batch_size)
    merged_ids = torch.from_numpy(np.flatnonzero(merged)).to(device)
    is_merged = torch.from_numpy(np.asarray(merged, dtype=bool)).to(device)
    state = model.init_state(batch_size, device=device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    rows = max(1, MERGED_CHUNK_ELEMENTS // max(len(merged), 1))
    for x, y in iter_bptt(streams, bptt):
        x, y = x.to(device), y.to(device)
        features, state = model.hidden_states(x, state)
        flat, targets = features.reshape(-1, features.shape[-1]), y.reshape(-1)
        for start in range(0, len(targets), rows):
            chunk = slice(start, start + rows)
            logp = torch.log_softmax(model.decode(flat[chunk]).float(), dim=-1)  # (N, V)
            own = logp.gather(1, targets[chunk, None]).squeeze(1)
            together = torch.logsumexp(logp[:, merged_ids], dim=1)
            total -= torch.where(is_merged[targets[chunk]], together, own).sum().double()
        count += y.numel()
        state = detach_state(state)
    return float(total.item()), count


def seconds_a_token(model: torch.nn.Module, tokens: np.ndarray, batch_size: int, bptt: int,
                    device: torch.device) -> float:
    """Seconds validation spends per token of ``tokens``, timed on their first 20 segments of
    each stream (it runs warm: a caller planning on it should allow for more). Leaves the
    model in training mode."""
    sample = tokens[: min(len(tokens), 20 * batch_size * bptt)]
    started = time.perf_counter()
    stream_loss_sum(model, sample, batch_size, bptt, device)
    synchronize(device)
    seconds = (time.perf_counter() - started) / max(len(sample), 1)
    model.train()
    return seconds
