"""The optimizer a run trains with, built from the training config."""

from __future__ import annotations

import torch

from rnnlm_cli.config import TrainConfig


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    # torch's fused kernels update every tensor in one pass instead of one pass per
    # elementwise operation: on a CPU, plain Adam's passes over the embedding matrix cost
    # more than the model's forward and backward together.
    options = {"lr": config.lr, "weight_decay": config.weight_decay, "fused": _can_fuse(params)}
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, **options)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, **options)
    return torch.optim.AdamW(params, **options)


def _can_fuse(params: list[torch.Tensor]) -> bool | None:
    """True where torch has fused kernels for every parameter; None leaves torch's default."""
    return True if all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params) else None
