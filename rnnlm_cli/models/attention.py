"""Causal dot-product attention over a window of recent top-layer outputs.

The window reaches back past the start of a truncated-BPTT segment: the last N outputs
are carried in the model's state as a memory, so segment boundaries change nothing.
Output t attends to itself and to the N outputs before it (those of this segment and
those in the memory), never to a later one. Memory slots not yet filled (at the start
of a stream) are masked out by a validity tensor that is part of the state as well.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class RecentAttention(nn.Module):
    """out_t = tanh(W [h_t; c_t] + b), c_t = sum_s softmax_s(q_t . k_s / sqrt(H)) n_s,

    n_s = LayerNorm(h_s), q_t = Q n_t, k_s = K n_s, over s in {t-N, ..., t}.

    The 1/sqrt(H) scaling assumes unit-variance features; raw LSTM outputs at
    initialisation are ~0.07 per unit, which makes every score ~1e-3 and the weights
    uniform until the projections have grown by orders of magnitude (a recall task then
    stays at chance for hundreds of steps). Normalising first, as pre-norm transformers
    do, gives scores of order one from the start.
    """

    def __init__(self, hidden_size: int, window: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.window = window
        self.norm = nn.LayerNorm(hidden_size)
        self.query = nn.Linear(hidden_size, hidden_size, bias=False)
        self.key = nn.Linear(hidden_size, hidden_size, bias=False)
        self.combine = nn.Linear(2 * hidden_size, hidden_size)

    def init_memory(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(memory (N, B, H), valid (N, B)), both zeros: nothing to attend to yet."""
        return (torch.zeros(self.window, batch_size, self.hidden_size, device=device, dtype=dtype),
                torch.zeros(self.window, batch_size, device=device, dtype=dtype))

    def forward(self, h: Tensor, memory: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h (T, B, H), memory (N, B, H), valid (N, B) -> out (T, B, H), new memory, new valid."""
        window = self.window
        states = torch.cat([memory, h])  # (N+T, B, H); query t sits at index N+t
        normed = self.norm(states)  # (N+T, B, H), also the values
        ok = torch.cat([valid, torch.ones_like(h[:, :, 0])]) > 0.5  # (N+T, B)
        query = self.query(normed[window:])  # (T, B, H)
        scores = torch.einsum("tbh,sbh->bts", query, self.key(normed)) / math.sqrt(self.hidden_size)  # (B, T, N+T)
        t = torch.arange(h.shape[0], device=h.device)[:, None]  # (T, 1)
        s = torch.arange(states.shape[0], device=h.device)[None, :]  # (1, N+T)
        causal = (s >= t) & (s <= t + window)  # (T, N+T): itself and the N before it
        allowed = causal[None] & ok.transpose(0, 1)[:, None, :]  # (B, T, N+T)
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        context = torch.einsum("bts,sbh->tbh", weights, normed)  # (T, B, H)
        out = torch.tanh(self.combine(torch.cat([h, context], dim=-1)))
        # The memory keeps raw outputs: the projections are applied afresh each call.
        return out, states[-window:], ok[-window:].to(valid.dtype)

    def extra_repr(self) -> str:
        return f"{self.hidden_size}, window={self.window}"
