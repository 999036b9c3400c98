"""Recurrent cells by name: a plain dict from name to a spec of builders.

A new cell (say a Mogrifier LSTM) is added with :func:`register_cell`; both of
its builders take the same plain arguments and return a module with the
recurrent-core interface::

    forward(x (T, B, input_size), state) -> (y (T, B, hidden_size), new_state)

where ``state`` is a tuple of ``state_count`` tensors, each (num_layers, B, hidden_size),
and one more method, used by the language model for locked dropout and weight drop::

    forward_layer(layer, x (T, B, in), state (each (B, H)), weight_hh=None) -> (y (T, B, H), new_state)

which runs one layer, with ``weight_hh`` (if given) in place of that layer's
hidden-to-hidden matrix. Parameters are named as torch's (``weight_ih_l0``, ...).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from torch import nn

from rnnlm_cli.errors import UsageError
from rnnlm_cli.models import fused, mogrifier, reference

Builder = Callable[[int, int, int, float], nn.Module]
"""(input_size, hidden_size, num_layers, dropout) -> recurrent core."""

IMPLS = ("fused", "reference")


@dataclass(frozen=True)
class CellSpec:
    """How to build one kind of recurrent cell."""

    state_count: int
    """Tensors in the state tuple: 2 for (h, c), 1 for (h,)."""
    fused: Builder
    """Builds the fast implementation (torch's kernels)."""
    reference: Builder
    """Builds the implementation written from the equations, with the same parameter names."""
    config_options: tuple[str, ...] = ()
    """ModelConfig fields passed to both builders as keyword arguments (e.g. ``mogrifier_rounds``)."""


def _reference(cell: reference.Cell, gates: int, state_count: int) -> Builder:
    return functools.partial(reference.ReferenceRecurrent, cell, gates, state_count)


CELLS: dict[str, CellSpec] = {
    "lstm": CellSpec(2, fused.FusedLSTM, _reference(reference.lstm_cell, 4, 2)),
    "gru": CellSpec(1, fused.FusedGRU, _reference(reference.gru_cell, 3, 1)),
    "rnn": CellSpec(1, fused.FusedRNN, _reference(reference.rnn_tanh_cell, 1, 1)),
    "mogrifier": CellSpec(2, functools.partial(mogrifier.MogrifierLSTM, scripted=True),
                          functools.partial(mogrifier.MogrifierLSTM, scripted=False),
                          config_options=("mogrifier_rounds",)),
}


def register_cell(name: str, spec: CellSpec) -> None:
    """Make ``name`` buildable; registering a name twice is a programming error."""
    if name in CELLS:
        raise ValueError(f"cell {name!r} is already registered")
    CELLS[name] = spec


def get_cell(name: str) -> CellSpec:
    try:
        return CELLS[name]
    except KeyError:
        raise UsageError(f"unknown cell {name!r}; choose one of {', '.join(CELLS)}") from None


def build_recurrent(cell: str, impl: str, input_size: int, hidden_size: int,
                    num_layers: int, dropout: float, **options: object) -> nn.Module:
    """Build a stack of ``num_layers`` recurrent layers; dropout acts between layers in training."""
    spec = get_cell(cell)
    if impl not in IMPLS:
        raise UsageError(f"unknown implementation {impl!r}; choose one of {', '.join(IMPLS)}")
    builder = spec.fused if impl == "fused" else spec.reference
    return builder(input_size, hidden_size, num_layers, dropout, **options)
