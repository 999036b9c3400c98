"""torch's fused recurrent modules (cuDNN on GPU) behind the tuple-state interface.

Each class *is* the torch module, so its parameters keep torch's names
(``weight_ih_l0``, ...) with no wrapper prefix, and a state dict moves freely
between these and :mod:`rnnlm_cli.models.reference`. Only ``forward`` changes:
the state is always a tuple, ``(h, c)`` for an LSTM and ``(h,)`` otherwise.

``forward_layer`` runs one layer on the same fused kernel (``torch._VF``), optionally
with a replaced hidden-to-hidden matrix: the language model uses it for locked dropout
between layers and for weight drop, with the parameters (and their names) untouched.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]


def _layer_weights(module: nn.RNNBase, layer: int, weight_hh: Tensor | None) -> list[Tensor]:
    """[weight_ih, weight_hh, bias_ih, bias_hh] of one layer, in the order torch's kernels take."""
    return [getattr(module, f"weight_ih_l{layer}"),
            getattr(module, f"weight_hh_l{layer}") if weight_hh is None else weight_hh,
            getattr(module, f"bias_ih_l{layer}"), getattr(module, f"bias_hh_l{layer}")]


def _between_layers(dropout: float, num_layers: int) -> float:
    # torch warns when dropout is set on a single layer, where it has no effect.
    return dropout if num_layers > 1 else 0.0


class FusedLSTM(nn.LSTM):
    """``nn.LSTM`` taking and returning the state as ``(h, c)``, each (L, B, H)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__(input_size, hidden_size, num_layers, dropout=_between_layers(dropout, num_layers))

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:  # type: ignore[override]
        h, c = state
        y, (h, c) = super().forward(x, (h, c))
        return y, (h, c)

    def forward_layer(self, layer: int, x: Tensor, state: State,
                      weight_hh: Tensor | None = None) -> tuple[Tensor, State]:
        """x (T, B, in), state (h, c) each (B, H) -> y (T, B, H), (h, c) each (B, H)."""
        h, c = state
        y, h, c = torch._VF.lstm(x, (h[None], c[None]), _layer_weights(self, layer, weight_hh),
                                 True, 1, 0.0, self.training, False, False)
        return y, (h[0], c[0])


class FusedGRU(nn.GRU):
    """``nn.GRU`` taking and returning the state as ``(h,)``, h (L, B, H)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__(input_size, hidden_size, num_layers, dropout=_between_layers(dropout, num_layers))

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:  # type: ignore[override]
        (h,) = state
        y, h = super().forward(x, h)
        return y, (h,)

    def forward_layer(self, layer: int, x: Tensor, state: State,
                      weight_hh: Tensor | None = None) -> tuple[Tensor, State]:
        """x (T, B, in), state (h,) with h (B, H) -> y (T, B, H), (h,)."""
        (h,) = state
        y, h = torch._VF.gru(x, h[None], _layer_weights(self, layer, weight_hh),
                               True, 1, 0.0, self.training, False, False)
        return y, (h[0],)


class FusedRNN(nn.RNN):
    """``nn.RNN(nonlinearity="tanh")`` taking and returning the state as ``(h,)``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__(input_size, hidden_size, num_layers, nonlinearity="tanh",
                         dropout=_between_layers(dropout, num_layers))

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:  # type: ignore[override]
        (h,) = state
        y, h = super().forward(x, h)
        return y, (h,)

    def forward_layer(self, layer: int, x: Tensor, state: State,
                      weight_hh: Tensor | None = None) -> tuple[Tensor, State]:
        """x (T, B, in), state (h,) with h (B, H) -> y (T, B, H), (h,)."""
        (h,) = state
        y, h = torch._VF.rnn_tanh(x, h[None], _layer_weights(self, layer, weight_hh),
                               True, 1, 0.0, self.training, False, False)
        return y, (h[0],)
