"""Recurrent language models: the cell registry, reference cells and the LM."""

from rnnlm_cli.models.lm import RNNLM, build_model, detach_state, parameter_count, select_state
from rnnlm_cli.models.registry import CELLS, CellSpec, build_recurrent, get_cell, register_cell

__all__ = [
    "CELLS",
    "CellSpec",
    "RNNLM",
    "build_model",
    "build_recurrent",
    "detach_state",
    "get_cell",
    "parameter_count",
    "register_cell",
    "select_state",
]
