"""The recurrent language model and its state helpers.

Layout (after pytorch/examples ``word_language_model``)::

    tokens (T, B) -> embedding (T, B, E) -> dropout -> recurrent core (T, B, H)
        -> dropout -> [proj (T, B, E) when tied and H != E] -> decoder (T, B, V)

With ``tied`` the decoder weight is the embedding weight (Press & Wolf, 2017),
which needs the decoder input to have the embedding size: hence ``proj``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlm_cli.config import ModelConfig
from rnnlm_cli.models.registry import build_recurrent, get_cell

State = tuple[Tensor, ...]

INIT_RANGE = 0.1
"""Embedding and decoder weights start uniform in [-0.1, 0.1], as in word_language_model."""


class RNNLM(nn.Module):
    """Embedding, stacked recurrent core and softmax decoder over ``config.vocab_size`` tokens."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.state_count = get_cell(config.cell).state_count
        self.embedding = nn.Embedding(config.vocab_size, config.emb)
        self.drop = nn.Dropout(config.dropout)
        self.rnn = build_recurrent(config.cell, config.impl, config.emb, config.hidden,
                                   config.layers, config.dropout)
        needs_proj = config.tied and config.hidden != config.emb
        self.proj = nn.Linear(config.hidden, config.emb) if needs_proj else None
        self.decoder = nn.Linear(config.emb if config.tied else config.hidden, config.vocab_size)
        self.reset_parameters()
        if config.tied:
            self.decoder.weight = self.embedding.weight

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.embedding.weight, -INIT_RANGE, INIT_RANGE)
        nn.init.uniform_(self.decoder.weight, -INIT_RANGE, INIT_RANGE)
        nn.init.zeros_(self.decoder.bias)

    @property
    def feature_size(self) -> int:
        """Width D of :meth:`hidden_states` features: the decoder's input size."""
        return self.decoder.in_features

    def init_state(self, batch_size: int, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        """Zero state for ``batch_size`` streams; device and dtype default to the model's."""
        weight = self.embedding.weight
        device = weight.device if device is None else device
        dtype = weight.dtype if dtype is None else dtype
        shape = (self.config.layers, batch_size, self.config.hidden)
        return tuple(torch.zeros(shape, device=device, dtype=dtype) for _ in range(self.state_count))

    def hidden_states(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens (T, B) -> features (T, B, D) just before the decoder, and the new state."""
        if state is None:
            state = self.init_state(tokens.shape[1])
        x = self.drop(self.embedding(tokens))  # (T, B, E)
        y, state = self.rnn(x, tuple(state))  # (T, B, H)
        y = self.drop(y)
        if self.proj is not None:
            y = self.proj(y)  # (T, B, E)
        return y, state

    def decode(self, features: Tensor) -> Tensor:
        """features (..., D) -> logits (..., V); callers may pass slices to bound memory."""
        return self.decoder(features)

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens (T, B) -> logits (T, B, V) and the state after the last step."""
        features, state = self.hidden_states(tokens, state)
        return self.decode(features), state


def build_model(config: ModelConfig) -> RNNLM:
    return RNNLM(config)


def detach_state(state: State) -> State:
    """Cut the graph between truncated-BPTT segments while keeping the values."""
    return tuple(s.detach() for s in state)


def select_state(state: State, index: Tensor | slice) -> State:
    """Keep or reorder batch streams: ``index`` a LongTensor of stream ids or a slice."""
    if isinstance(index, slice):
        return tuple(s[:, index] for s in state)
    return tuple(s.index_select(1, index.to(s.device)) for s in state)


def parameter_count(model: nn.Module) -> int:
    """Number of trainable values; a tied weight counts once."""
    return sum(p.numel() for p in model.parameters())
