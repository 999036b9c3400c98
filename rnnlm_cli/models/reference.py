"""Recurrent layers written out from their gate equations.

These follow the equations and gate order documented for ``torch.nn.LSTM``,
``torch.nn.GRU`` and ``torch.nn.RNN`` and name their parameters exactly as those
modules do (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ...),
so one state dict loads into either implementation. They are slower than the
fused kernels; they exist to be read, checked and modified.

A cell is a plain function of one time step::

    cell(xw, state, weight_hh, bias_hh) -> new_state

where ``xw = W_ih x + b_ih`` has already been computed for the whole sequence
(one large matrix product instead of T small ones; the equations are unchanged).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

State = tuple[Tensor, ...]
Cell = Callable[[Tensor, State, Tensor, Tensor], State]


def lstm_cell(xw: Tensor, state: State, weight_hh: Tensor, bias_hh: Tensor) -> State:
    """One LSTM step; gates in torch's order i, f, g, o.

    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)
    f = sigmoid(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)
    o = sigmoid(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g;  h' = o * tanh(c')
    """
    h, c = state
    gates = xw + F.linear(h, weight_hh, bias_hh)  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


def gru_cell(xw: Tensor, state: State, weight_hh: Tensor, bias_hh: Tensor) -> State:
    """One GRU step; gates in torch's order r, z, n.

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h
    """
    (h,) = state
    hw = F.linear(h, weight_hh, bias_hh)  # (B, 3H)
    x_r, x_z, x_n = xw.chunk(3, dim=-1)
    h_r, h_z, h_n = hw.chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return ((1 - z) * n + z * h,)


def rnn_tanh_cell(xw: Tensor, state: State, weight_hh: Tensor, bias_hh: Tensor) -> State:
    """One Elman step: h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""
    (h,) = state
    return (torch.tanh(xw + F.linear(h, weight_hh, bias_hh)),)


class ReferenceRecurrent(nn.Module):
    """A stack of ``num_layers`` layers of ``cell``, looping over time steps in Python.

    Parameters have torch's names and shapes: for layer k, ``weight_ih_lk``
    (gates*H, in), ``weight_hh_lk`` (gates*H, H), ``bias_ih_lk`` and ``bias_hh_lk``
    (gates*H,), where ``gates`` is 4 for an LSTM, 3 for a GRU and 1 for an RNN.
    """

    def __init__(self, cell: Cell, gates: int, state_count: int, input_size: int,
                 hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.cell = cell
        self.gates = gates
        self.state_count = state_count
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{layer}", nn.Parameter(torch.empty(gates * hidden_size, width)))
            self.register_parameter(f"weight_hh_l{layer}", nn.Parameter(torch.empty(gates * hidden_size, hidden_size)))
            self.register_parameter(f"bias_ih_l{layer}", nn.Parameter(torch.empty(gates * hidden_size)))
            self.register_parameter(f"bias_hh_l{layer}", nn.Parameter(torch.empty(gates * hidden_size)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same distribution as torch's recurrent modules: U(-1/sqrt(H), 1/sqrt(H)).
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def layer_weights(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(weight_ih, weight_hh, bias_ih, bias_hh) of one layer."""
        return (getattr(self, f"weight_ih_l{layer}"), getattr(self, f"weight_hh_l{layer}"),
                getattr(self, f"bias_ih_l{layer}"), getattr(self, f"bias_hh_l{layer}"))

    def forward_layer(self, layer: int, x: Tensor, state: State,
                      weight_hh: Tensor | None = None) -> tuple[Tensor, State]:
        """One layer: x (T, B, in), state each (B, H) -> y (T, B, H), new state each (B, H).

        ``weight_hh`` replaces the layer's hidden-to-hidden matrix (weight drop).
        """
        weight_ih, own_hh, bias_ih, bias_hh = self.layer_weights(layer)
        weight_hh = own_hh if weight_hh is None else weight_hh
        xw = F.linear(x, weight_ih, bias_ih)  # (T, B, gates*H)
        outputs = []
        for step in range(xw.shape[0]):
            state = self.cell(xw[step], state, weight_hh, bias_hh)
            outputs.append(state[0])
        return torch.stack(outputs), state  # (T, B, H)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x (T, B, input_size), state: each (L, B, H) -> y (T, B, H), new state."""
        return run_layers(self, x, state, self.state_count)

    def extra_repr(self) -> str:
        return (f"{self.cell.__name__}, {self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}, dropout={self.dropout}")


def run_layers(core: nn.Module, x: Tensor, state: State, state_count: int) -> tuple[Tensor, State]:
    """Stack ``core.forward_layer`` over ``core.num_layers`` layers, with dropout between them
    (only between, as torch's ``dropout`` argument does). state: each (L, B, H)."""
    finals: list[State] = []
    for layer in range(core.num_layers):
        if layer > 0:
            x = F.dropout(x, core.dropout, core.training)
        x, layer_state = core.forward_layer(layer, x, tuple(s[layer] for s in state))
        finals.append(layer_state)
    return x, tuple(torch.stack([f[k] for f in finals]) for k in range(state_count))
