"""Recurrent cells by name: a plain dict from name to a :class:`CellSpec`, the one place a cell is known.

Everything else reads a cell from here: :class:`~rnnlm_cli.models.config.ModelConfig` checks
``--cell`` against :data:`CELLS` and takes the state count, :mod:`rnnlm_cli.models.sizing`
estimates parameters and memory from the gate count and :attr:`CellSpec.extra_parameters`,
:mod:`rnnlm_cli.store.export` names the ONNX state inputs and outputs from
:attr:`CellSpec.state_names`, a resumed run keeps every cell's :attr:`CellSpec.config_options`,
and ``rnnlm train --help`` lists the names. So :func:`register_cell` alone makes a new cell
trainable, scorable, sampleable and exportable.

Both builders of a spec take the same plain arguments and return a module with the
recurrent-core interface::

    forward(x (T, B, input_size), state) -> (y (T, B, hidden_size), new_state)

where ``state`` is a tuple of ``state_count`` tensors, each (num_layers, B, hidden_size),
the first of them the layer's output h, and one more method, used by the language model
for locked dropout and weight drop::

    forward_layer(layer, x (T, B, in), state (each (B, H)), weight_hh=None) -> (y (T, B, H), new_state)

which runs one layer, with ``weight_hh`` (if given) in place of that layer's
hidden-to-hidden matrix. Each layer k holds torch's four parameters ``weight_ih_lk``
(gates*H, in), ``weight_hh_lk`` (gates*H, H), ``bias_ih_lk`` and ``bias_hh_lk`` (gates*H,),
then the cell's own (:attr:`CellSpec.extra_parameters`).

The built-in builders import their modules at first use: this module loads without torch,
so the command line can list the cells without the second it takes to import torch.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from rnnlm_cli.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

Builder = Callable[..., "nn.Module"]
"""(input_size, hidden_size, num_layers, dropout, **config_options) -> recurrent core."""

Shapes = tuple[tuple[int, ...], ...]

IMPLS = ("fused", "reference")


def no_extra_parameters(input_size: int, hidden_size: int, **options: Any) -> Shapes:
    """A cell with torch's four parameters per layer and nothing else."""
    return ()


@dataclass(frozen=True)
class CellSpec:
    """How to build one kind of recurrent cell, and what the rest of rnnlm needs to know of it."""

    gates: int
    """Gate blocks per layer: rows of ``weight_ih_lk`` over the hidden size (4 for an LSTM)."""
    state_names: tuple[str, ...]
    """One name per state tensor, the output h first; ONNX exports take ``<name>0`` and
    return ``<name>n`` (("h", "c") -> h0, c0 in, hn, cn out)."""
    fused: Builder
    """Builds the fast implementation (torch's kernels, or a compiled loop)."""
    reference: Builder
    """Builds the implementation written from the equations, with the same parameter names."""
    config_options: tuple[str, ...] = ()
    """ModelConfig fields passed to both builders (and to ``extra_parameters``) as keyword arguments."""
    extra_parameters: Callable[..., Shapes] = no_extra_parameters
    """(input_size, hidden_size, **config_options) -> shapes of one layer's parameters beyond
    torch's four, in the order the module registers them."""

    def __post_init__(self) -> None:
        if self.gates < 1:
            raise ValueError(f"a cell has at least one gate block, got {self.gates}")
        names = self.state_names
        if not names or len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
            raise ValueError(f"state names must be distinct identifiers, at least one, got {names!r}")
        reserved = {"tokens", "log_probs", "mem", "valid"} & set(names)
        if reserved:
            raise ValueError(f"state names {sorted(reserved)} are taken by the exported graph's other inputs")

    @property
    def state_count(self) -> int:
        """Tensors in the state tuple: 2 for (h, c), 1 for (h,)."""
        return len(self.state_names)

    def layer_parameters(self, input_size: int, hidden_size: int, **options: Any) -> Shapes:
        """Shapes of one layer's parameters, in registration order: torch's four, then the cell's own."""
        rows = self.gates * hidden_size
        return ((rows, input_size), (rows, hidden_size), (rows,), (rows,),
                *self.extra_parameters(input_size, hidden_size, **options))

    def layer_size(self, input_size: int, hidden_size: int, **options: Any) -> int:
        """Values one layer holds: the sum over :meth:`layer_parameters`."""
        return sum(math.prod(shape) for shape in self.layer_parameters(input_size, hidden_size, **options))


def _call(module: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """``rnnlm_cli.models.<module>.<name>(*args, **kwargs)``, the module imported now."""
    return getattr(importlib.import_module(f"rnnlm_cli.models.{module}"), name)(*args, **kwargs)


def _lazy(module: str, name: str, **fixed: Any) -> Callable[..., Any]:
    return functools.partial(_call, module, name, **fixed)


def _build_reference(step: str, gates: int, state_count: int, *args: Any) -> nn.Module:
    from rnnlm_cli.models import reference

    return reference.ReferenceRecurrent(getattr(reference, step), gates, state_count, *args)


def _torch_cell(fused_class: str, step: str, gates: int, state_names: tuple[str, ...]) -> CellSpec:
    """A cell torch has a fused module for (:mod:`fused`) and a step function of :mod:`reference`."""
    return CellSpec(gates=gates, state_names=state_names, fused=_lazy("fused", fused_class),
                    reference=functools.partial(_build_reference, step, gates, len(state_names)))


CELLS: dict[str, CellSpec] = {
    "lstm": _torch_cell("FusedLSTM", "lstm_cell", 4, ("h", "c")),
    "gru": _torch_cell("FusedGRU", "gru_cell", 3, ("h",)),
    "rnn": _torch_cell("FusedRNN", "rnn_tanh_cell", 1, ("h",)),
    "mogrifier": CellSpec(gates=4, state_names=("h", "c"),
                          fused=_lazy("mogrifier", "MogrifierLSTM", scripted=True),
                          reference=_lazy("mogrifier", "MogrifierLSTM", scripted=False),
                          config_options=("mogrifier_rounds",),
                          extra_parameters=_lazy("mogrifier", "gating_shapes")),
}


def register_cell(name: str, spec: CellSpec) -> None:
    """Make ``name`` a cell every command accepts; registering a name twice is a programming error."""
    if name in CELLS:
        raise ValueError(f"cell {name!r} is already registered")
    CELLS[name] = spec


def unregister_cell(name: str) -> CellSpec:
    """Forget ``name`` (registered by :func:`register_cell`); returns its spec."""
    return CELLS.pop(name)


@contextlib.contextmanager
def registered_cell(name: str, spec: CellSpec) -> Iterator[CellSpec]:
    """``name`` registered for the ``with`` block only."""
    register_cell(name, spec)
    try:
        yield spec
    finally:
        unregister_cell(name)


def get_cell(name: str) -> CellSpec:
    try:
        return CELLS[name]
    except KeyError:
        raise UsageError(f"unknown cell {name!r}; choose one of {', '.join(CELLS)}") from None


def cell_options() -> tuple[str, ...]:
    """The ModelConfig fields any registered cell takes, each once, in registration order."""
    return tuple(dict.fromkeys(option for spec in CELLS.values() for option in spec.config_options))


def build_recurrent(cell: str, impl: str, input_size: int, hidden_size: int,
                    num_layers: int, dropout: float, **options: object) -> nn.Module:
    """Build a stack of ``num_layers`` recurrent layers; dropout acts between layers in training."""
    spec = get_cell(cell)
    if impl not in IMPLS:
        raise UsageError(f"unknown implementation {impl!r}; choose one of {', '.join(IMPLS)}")
    builder = spec.fused if impl == "fused" else spec.reference
    return builder(input_size, hidden_size, num_layers, dropout, **options)
