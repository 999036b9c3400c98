"""The optimizer a run trains with, built from the training config."""

from __future__ import annotations

from typing import Any

import torch

from rnnlm_cli.config import TrainConfig

KERNEL_CHOICES = ("fused", "foreach")
"""Param-group settings that pick torch's kernels for this device; never taken from a file."""


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return make_optimizer_for([p for p in model.parameters() if p.requires_grad], config)


def make_optimizer_for(params: list[torch.Tensor], config: TrainConfig) -> torch.optim.Optimizer:
    # torch's fused kernels update every tensor in one pass instead of one pass per
    # elementwise operation: on a CPU, plain Adam's passes over the embedding matrix cost
    # more than the model's forward and backward together.
    options = {"lr": config.lr, "weight_decay": config.weight_decay, "fused": _can_fuse(params)}
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, **options)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, **options)
    return torch.optim.AdamW(params, **options)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a saved optimizer state (checked by ``state.TrainState.from_dict``) while
    keeping this optimizer's own kernel choices: a state saved on another device, or edited,
    must not decide which kernel writes into the moments."""
    # Set before loading: torch places each moment and step by the loaded group's choices.
    groups = [{**saved, **{key: group[key] for key in KERNEL_CHOICES if key in group}}
              for saved, group in zip(state["param_groups"], optimizer.param_groups)]
    optimizer.load_state_dict({**state, "param_groups": groups})


def _can_fuse(params: list[torch.Tensor]) -> bool | None:
    """True where torch has fused kernels for every parameter; None leaves torch's default."""
    return True if all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params) else None
