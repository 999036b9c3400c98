"""Mogrifier LSTM (Melis, Kočiský & Blunsom, ICLR 2020).

Before each LSTM step, the input x and the previous output h gate each other for
``rounds`` rounds (the paper's equations 1-2, with x^-1 = x and h^0 = h_prev)::

    x^i = 2 sigmoid(Q^i h^(i-1)) * x^(i-2)    for odd i in 1..rounds
    h^i = 2 sigmoid(R^i x^(i-1)) * h^(i-2)    for even i in 1..rounds

then the ordinary LSTM step (torch's gate order i, f, g, o) reads the last x and h.
Q^i is (input_size, H) and R^i is (H, input_size), full rank and without bias, as in
the paper. With 0 rounds this is exactly ``nn.LSTM``, and the LSTM parameters keep
torch's names (``weight_ih_l0``, ...); the gating matrices of layer k are stacked in
``mogrifier_q_lk`` (ceil(rounds/2), in, H) and ``mogrifier_r_lk`` (floor(rounds/2), H, in).

The time loop cannot be fused into one kernel (x changes every step), so the "fused"
implementation compiles it with TorchScript; the "reference" one runs the same function
as plain Python. Both hold the same parameters.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnlm_cli.models.reference import run_layers

State = tuple[Tensor, ...]


def mogrifier_layer(x: Tensor, h: Tensor, c: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor,
                    bias_hh: Tensor, q: Tensor, r: Tensor, rounds: int) -> tuple[Tensor, Tensor, Tensor]:
    """x (T, B, in), h and c (B, H) -> y (T, B, H), h, c after the last step."""
    outputs = []
    for step in range(x.shape[0]):
        xt = x[step]  # (B, in)
        for i in range(1, rounds + 1):
            if i % 2 == 1:
                xt = 2.0 * torch.sigmoid(F.linear(h, q[(i - 1) // 2])) * xt
            else:
                h = 2.0 * torch.sigmoid(F.linear(xt, r[i // 2 - 1])) * h
        gates = F.linear(xt, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)  # (B, 4H)
        i_gate, f_gate, g_gate, o_gate = gates.chunk(4, 1)
        c = torch.sigmoid(f_gate) * c + torch.sigmoid(i_gate) * torch.tanh(g_gate)
        h = torch.sigmoid(o_gate) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs), h, c


with warnings.catch_warnings():
    # Newer torch marks TorchScript deprecated; it remains the way to compile a time loop
    # that runs unchanged on every backend and under autograd.
    warnings.simplefilter("ignore", DeprecationWarning)
    scripted_mogrifier_layer = torch.jit.script(mogrifier_layer)


def gating_stacks(input_size: int, hidden_size: int, mogrifier_rounds: int) -> dict[str, tuple[int, int, int]]:
    """One layer's gating stacks by name: q (one matrix per odd round), r (per even round);
    a stack with no round is left out."""
    count_q, count_r = (mogrifier_rounds + 1) // 2, mogrifier_rounds // 2
    stacks = {"q": (count_q, input_size, hidden_size), "r": (count_r, hidden_size, input_size)}
    return {name: shape for name, shape in stacks.items() if shape[0]}


def gating_shapes(input_size: int, hidden_size: int, mogrifier_rounds: int) -> tuple[tuple[int, ...], ...]:
    """The registry's ``extra_parameters``: the shapes of :func:`gating_stacks`, in registration order."""
    return tuple(gating_stacks(input_size, hidden_size, mogrifier_rounds).values())


class MogrifierLSTM(nn.Module):
    """A stack of Mogrifier LSTM layers; state ``(h, c)``, each (L, B, H)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                 mogrifier_rounds: int = 5, scripted: bool = True) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.rounds = mogrifier_rounds
        self.scripted = scripted
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{layer}", nn.Parameter(torch.empty(4 * hidden_size, width)))
            self.register_parameter(f"weight_hh_l{layer}", nn.Parameter(torch.empty(4 * hidden_size, hidden_size)))
            self.register_parameter(f"bias_ih_l{layer}", nn.Parameter(torch.empty(4 * hidden_size)))
            self.register_parameter(f"bias_hh_l{layer}", nn.Parameter(torch.empty(4 * hidden_size)))
            for name, shape in gating_stacks(width, hidden_size, mogrifier_rounds).items():
                self.register_parameter(f"mogrifier_{name}_l{layer}", nn.Parameter(torch.empty(shape)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def _gating(self, layer: int, name: str, shape: tuple[int, int]) -> Tensor:
        weight = getattr(self, f"mogrifier_{name}_l{layer}", None)
        if weight is None:  # fewer than one (or two) rounds: an empty stack
            return self.weight_ih_l0.new_empty((0, *shape))
        return weight

    def forward_layer(self, layer: int, x: Tensor, state: State,
                      weight_hh: Tensor | None = None) -> tuple[Tensor, State]:
        """x (T, B, in), state (h, c) each (B, H) -> y (T, B, H), (h, c)."""
        width, hidden = x.shape[-1], self.hidden_size
        h, c = state
        weight_hh = getattr(self, f"weight_hh_l{layer}") if weight_hh is None else weight_hh
        run = scripted_mogrifier_layer if self.scripted else mogrifier_layer
        y, h, c = run(x, h, c, getattr(self, f"weight_ih_l{layer}"), weight_hh,
                      getattr(self, f"bias_ih_l{layer}"), getattr(self, f"bias_hh_l{layer}"),
                      self._gating(layer, "q", (width, hidden)),
                      self._gating(layer, "r", (hidden, width)), self.rounds)
        return y, (h, c)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x (T, B, input_size), state (h, c) each (L, B, H) -> y (T, B, H), new state."""
        return run_layers(self, x, state, 2)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"rounds={self.rounds}, dropout={self.dropout}, scripted={self.scripted}")
