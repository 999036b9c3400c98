"""torch's fused recurrent modules (cuDNN on GPU) behind the tuple-state interface.

Each class *is* the torch module, so its parameters keep torch's names
(``weight_ih_l0``, ...) with no wrapper prefix, and a state dict moves freely
between these and :mod:`rnnlm_cli.models.reference`. Only ``forward`` changes:
the state is always a tuple, ``(h, c)`` for an LSTM and ``(h,)`` otherwise.
"""

from __future__ import annotations

from torch import Tensor, nn

State = tuple[Tensor, ...]


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


class FusedGRU(nn.GRU):
    """``nn.GRU`` taking and returning the state as ``(h,)``, h (L, B, H)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__(input_size, hidden_size, num_layers, dropout=_between_layers(dropout, num_layers))

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:  # type: ignore[override]
        (h,) = state
        y, h = super().forward(x, h)
        return y, (h,)


class FusedRNN(nn.RNN):
    """``nn.RNN(nonlinearity="tanh")`` taking and returning the state as ``(h,)``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__(input_size, hidden_size, num_layers, nonlinearity="tanh",
                         dropout=_between_layers(dropout, num_layers))

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:  # type: ignore[override]
        (h,) = state
        y, h = super().forward(x, h)
        return y, (h,)
