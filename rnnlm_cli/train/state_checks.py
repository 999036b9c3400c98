"""Checks of the parts of a ``.last.pt`` training state that only training knows the shape of.

The optimizer's moments go straight into torch's fused kernels, which trust their shapes,
and the carried hidden state into the model: each is held to what a fresh optimizer and
the model being resumed would make. Each check raises ``DamagedState`` (exit 65) naming
the field; ``TrainState.from_dict`` (:mod:`rnnlm_cli.train.state`) calls them in turn.
"""

from __future__ import annotations

from typing import Any

import torch

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.stored_checks import (BIG_COUNT, DamagedState, check_mapping, check_number, check_sequence,
                                    check_tensor, key_name)
from rnnlm_cli.train.optimizers import KERNEL_CHOICES, make_optimizer_for

HIDDEN_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
"""Dtypes a carried hidden state may have: bf16 autocast may leave it in bf16."""
_TRAIN_CONFIG_TYPES = {"batch_size": int, "bptt": int, "random_bptt": bool, "optimizer": str}


def trainable_parameters(model: torch.nn.Module, config: TrainConfig) -> list[torch.Tensor]:
    """The parameters the optimizer and the weight average will hold, in their order.

    ``--freeze-embeddings`` is applied after the resume point is read, so it is mirrored here.
    """
    frozen = getattr(getattr(model, "embedding", None), "weight", None) if (
        config.embeddings and config.freeze_embeddings) else None
    return [p for p in model.parameters() if p.requires_grad and p is not frozen]


def check_train_config(saved: dict[str, Any]) -> None:
    """The stored training settings resume compares with this run's are of their own types."""
    for name, kind in _TRAIN_CONFIG_TYPES.items():
        if name in saved and type(saved[name]) is not kind:
            raise DamagedState(f"train_config.{name}", f"is a {type(saved[name]).__name__}, expected {kind.__name__}")
    provenance = saved.get("provenance", {})
    if not isinstance(provenance, dict):
        raise DamagedState("train_config.provenance", f"is a {type(provenance).__name__}, expected a mapping")
    fingerprint = provenance.get("data_fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise DamagedState("train_config.provenance.data_fingerprint", "is not a string")


def check_optimizer(saved: Any, params: list[torch.Tensor], config: TrainConfig) -> None:
    """An optimizer state dict that ``config``'s optimizer over ``params`` could have saved."""
    check_mapping("optimizer", saved, ("state", "param_groups"))
    fresh = make_optimizer_for(params, config).state_dict()["param_groups"][0]
    groups = check_sequence("optimizer.param_groups", saved["param_groups"], 1)
    group = check_mapping("optimizer.param_groups.0", groups[0], tuple(fresh))
    params_field = "optimizer.param_groups.0.params"
    indices = check_sequence(params_field, group["params"], len(params))
    if list(indices) != list(range(len(params))) or any(type(i) is not int for i in indices):
        raise DamagedState(params_field, f"is not the indices 0..{len(params) - 1} of the model's parameters")
    for key, want in fresh.items():
        _check_group_value(f"optimizer.param_groups.0.{key}", key, group[key], want)
    state = saved["state"]
    if not isinstance(state, dict):
        raise DamagedState("optimizer.state", f"is a {type(state).__name__}, expected a mapping")
    for index, entry in state.items():
        if type(index) is not int or not 0 <= index < len(params):
            raise DamagedState("optimizer.state", f"has an entry for {key_name(index)}, not a parameter index")
        _check_param_state(f"optimizer.state.{index}", entry, params[index], config.optimizer)


def check_hidden(field: str, hidden: Any, expected: tuple[torch.Tensor, ...]) -> None:
    """None, or one tensor per tensor of ``expected`` (the model's fresh state) of its shape."""
    if hidden is None:
        return
    check_sequence(field, hidden, len(expected))
    for index, (tensor, want) in enumerate(zip(hidden, expected)):
        check_tensor(f"{field}.{index}", tensor, HIDDEN_DTYPES, want.shape)


def _check_group_value(field: str, key: str, value: Any, want: Any) -> None:
    if key == "params":
        return
    if key in ("lr", "weight_decay"):  # the run's own settings; every step sets lr anew
        check_number(field, value, 0.0, 1e6)
    elif isinstance(want, tuple):  # Adam's betas: torch's defaults, as make_optimizer asks for
        if not isinstance(value, (tuple, list)) or list(value) != list(want):
            raise DamagedState(field, f"is {_short(value)}, expected {want}")
    elif key in KERNEL_CHOICES:
        # Which kernel runs depends on the device, and is this run's choice, not the file's:
        # optimizers.load_optimizer_state puts the fresh optimizer's back after loading.
        if value is not None and not isinstance(value, bool):
            raise DamagedState(field, f"is a {type(value).__name__}, expected true, false or none")
    elif type(value) is not type(want) or value != want:
        # amsgrad, maximize, nesterov, eps, momentum...: make_optimizer never changes them,
        # and they decide which state tensors the step reads.
        raise DamagedState(field, f"is {_short(value)}, expected {want!r}")


def _check_param_state(field: str, entry: Any, param: torch.Tensor, optimizer: str) -> None:
    if optimizer == "sgd":
        check_mapping(field, entry, (), ("momentum_buffer",))
        if entry.get("momentum_buffer") is not None:
            check_tensor(f"{field}.momentum_buffer", entry["momentum_buffer"], param.dtype, param.shape)
        return
    check_mapping(field, entry, ("step", "exp_avg", "exp_avg_sq"))
    # torch's fused Adam reads step as a float32 scalar, the moments as the parameter's twins.
    check_tensor(f"{field}.step", entry["step"], torch.float32, (), low=0.0, high=float(BIG_COUNT))
    check_tensor(f"{field}.exp_avg", entry["exp_avg"], param.dtype, param.shape)
    check_tensor(f"{field}.exp_avg_sq", entry["exp_avg_sq"], param.dtype, param.shape, low=0.0)


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, (bool, int, float, str, type(None))) else f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."
