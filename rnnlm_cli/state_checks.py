"""Checks of what a checkpoint holds, made before any of it is used.

A loaded tensor is only metadata over a storage read from the file: its shape and strides
say how much memory an operation on it will touch or allocate. An expanded view
(``torch.zeros(1).expand(10**9)``) is 4 bytes in the file and a gigabyte once anything
materialises it, and a moment of the wrong shape sends torch's fused optimizer kernels
past the end of their buffers. So every tensor is first checked on its metadata alone
(:func:`check_dense`: dense, on the CPU, contiguous, starting at its storage's start, and
exactly as large as that storage), and only then, against the shape and dtype the model
config implies, on its values.

:func:`check_training_state` does this for everything ``--resume`` reads from a
``.last.pt`` file; the pieces it uses are :func:`check_tensor` and the plain-value checks
below, which ``trainstate`` and ``schedules`` also use on what they restore.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from rnnlm_cli.errors import CheckpointError

if TYPE_CHECKING:
    from rnnlm_cli.checkpoint import Checkpoint
    from rnnlm_cli.config import TrainConfig

_DTYPES = frozenset({torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.int8,
                     torch.int16, torch.int32, torch.int64, torch.bool})
_HIDDEN_DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # bf16 autocast may leave the state in bf16
_BIG = 1 << 62  # counters past this overflow torch's and numpy's int64 arithmetic
_RESUME_ADVICE = "resume from an intact .last.pt, or start anew with --init-from the model"


class DamagedState(CheckpointError):
    """One field of a checkpoint that cannot be used; exit 65 wherever it surfaces."""

    def __init__(self, field: str, problem: str, source: str = "the saved training state") -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{source} is damaged ({field} {problem})")


def check_dense(field: str, value: Any) -> torch.Tensor:
    """``value`` as a tensor that owns exactly its storage; reads metadata only, never values."""
    if not isinstance(value, torch.Tensor):
        raise DamagedState(field, f"is a {type(value).__name__}, expected a tensor")
    if value.layout != torch.strided or value.is_quantized or value.device.type != "cpu":
        raise DamagedState(field, f"is a {value.layout} tensor on {value.device.type}, expected a dense CPU tensor")
    if value.dtype not in _DTYPES:
        raise DamagedState(field, f"has dtype {value.dtype}, which rnnlm never saves")
    # Contiguous from offset 0 over a storage of exactly numel elements: no element is
    # shared, none lies outside the file's bytes, and no operation can inflate the view.
    if (value.storage_offset() != 0 or not value.is_contiguous()
            or value.untyped_storage().nbytes() != value.numel() * value.element_size()):
        raise DamagedState(field, f"of shape {tuple(value.shape)} is an expanded, strided or offset view "
                                  "of a buffer, not a tensor of its own")
    return value


def check_tensor(field: str, value: Any, dtype: torch.dtype | tuple[torch.dtype, ...],
                 shape: tuple[int, ...] | torch.Size | None = None, *, finite: bool = True,
                 low: float | None = None, high: float | None = None) -> torch.Tensor:
    """A dense tensor of ``dtype`` and ``shape`` whose values are finite and in [low, high]."""
    tensor = check_dense(field, value)
    allowed = dtype if isinstance(dtype, tuple) else (dtype,)
    if tensor.dtype not in allowed:
        raise DamagedState(field, f"has dtype {tensor.dtype}, expected {' or '.join(map(str, allowed))}")
    if shape is not None and tuple(tensor.shape) != tuple(shape):
        raise DamagedState(field, f"has shape {tuple(tensor.shape)}, expected {tuple(shape)}")
    if tensor.numel() == 0:
        return tensor
    # The checks above bound the work below by the file's own bytes.
    if finite and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise DamagedState(field, "holds NaN or infinite values")
    if low is not None and bool((tensor < low).any()):
        raise DamagedState(field, f"holds values below {low}")
    if high is not None and bool((tensor > high).any()):
        raise DamagedState(field, f"holds values above {high}")
    return tensor


def check_int(field: str, value: Any, low: int = 0, high: int = _BIG) -> int:
    if type(value) is not int:  # bool is an int to Python, but never a count
        raise DamagedState(field, f"is a {type(value).__name__}, expected an integer")
    if not low <= value <= high:
        shown = value if value.bit_length() <= 64 else "a huge integer"
        raise DamagedState(field, f"is {shown}, expected {low}..{high}" if high < _BIG
                           else f"is {shown}, expected at least {low} and below 2**62")
    return value


def check_number(field: str, value: Any, low: float = 0.0, high: float = math.inf, *,
                 infinite: bool = False) -> float:
    """A float (or int) in [low, high]; +-inf only when ``infinite``, NaN never."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DamagedState(field, f"is a {type(value).__name__}, expected a number")
    number = float(value) if not isinstance(value, int) or value.bit_length() <= 1000 else math.inf
    if math.isnan(number) or (math.isinf(number) and not infinite) or not low <= number <= high:
        raise DamagedState(field, f"is {number}, expected a finite number in [{low}, {high}]"
                           if not infinite else f"is {number}, expected a number in [{low}, {high}]")
    return number


def check_mapping(field: str, value: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """A dict with every ``required`` key, and no key outside ``required + optional``."""
    if not isinstance(value, dict):
        raise DamagedState(field, f"is a {type(value).__name__}, expected a mapping")
    missing = [key for key in required if key not in value]
    if missing:
        raise DamagedState(field, f"has no {missing[0]}")
    known = set(required) | set(optional)
    unknown = [key for key in value if key not in known]
    if unknown:
        raise DamagedState(field, f"has an unknown entry {_name(unknown[0])}")
    return value


def check_sequence(field: str, value: Any, length: int) -> list | tuple:
    if not isinstance(value, (list, tuple)):
        raise DamagedState(field, f"is a {type(value).__name__}, expected a list")
    if len(value) != length:
        raise DamagedState(field, f"has {len(value)} entries, expected {length}")
    return value


def check_all_tensors(payload: Any, max_depth: int = 64) -> None:
    """:func:`check_dense` on every tensor anywhere in ``payload``, before any is used.

    Each container is visited once: a pickle can reference one list many times over, and
    a walk that followed every reference could take exponential time.
    """
    seen: set[int] = set()
    stack: list[tuple[str, Any, int]] = [("", payload, 0)]
    while stack:
        field, value, depth = stack.pop()
        if isinstance(value, torch.Tensor):
            check_dense(field or "the file", value)
            continue
        if not isinstance(value, (dict, list, tuple, set, frozenset)) or id(value) in seen:
            continue
        if depth >= max_depth:
            raise DamagedState(field, f"nests containers more than {max_depth} deep")
        seen.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(item, (torch.Tensor, dict, list, tuple, set, frozenset)):
                stack.append((f"{field}.{_name(key)}" if field else _name(key), item, depth + 1))


def _name(key: Any) -> str:
    if isinstance(key, int) and not isinstance(key, bool) and key.bit_length() <= 64:
        return str(key)
    if isinstance(key, str) and key.isprintable():
        return key if len(key) <= 40 else key[:37] + "..."
    return f"a {type(key).__name__} key" if not isinstance(key, str) else "an unprintable key"


# -- the training state of a .last.pt file --------------------------------------------------

_STATE_REQUIRED = ("optimizer", "progress")
_STATE_OPTIONAL = ("world_size", "schedule", "average", "rng", "hidden", "ranks")
_TRAIN_CONFIG_TYPES = {"batch_size": int, "bptt": int, "random_bptt": bool, "optimizer": str}


def check_training_state(path: str, checkpoint: Checkpoint, model: torch.nn.Module,
                         config: TrainConfig, world_size: int) -> None:
    """Refuse (CheckpointError naming ``path`` and the field) any part of ``checkpoint``'s
    training state or resume settings that ``--resume`` could not use as it is (the weights
    were checked against the stored config when the file was loaded).

    ``model`` is the model being resumed, built on the CPU from the checkpoint's config;
    nothing in ``checkpoint`` is assumed well-formed, and nothing is changed.
    """
    try:
        _check_training_state(checkpoint, model, config, world_size)
    except DamagedState as exc:
        raise CheckpointError(f"{path}: training state is damaged ({exc.field} {exc.problem}); "
                              f"{_RESUME_ADVICE}") from None


def _check_training_state(checkpoint: Checkpoint, model: torch.nn.Module, config: TrainConfig,
                          world_size: int) -> None:
    from rnnlm_cli.schedules import LrSchedule, WeightAverage
    from rnnlm_cli.trainstate import Progress, check_rng_state

    state = checkpoint.training_state
    if state is None:
        return  # not a resumable file: the caller says so in its own words
    _check_train_config(checkpoint.train_config)
    check_mapping("training_state", state, _STATE_REQUIRED, _STATE_OPTIONAL)
    check_int("world_size", state.get("world_size", 1), 1, 1 << 20)
    Progress.from_dict(state["progress"], config.bptt)
    trainable = trainable_parameters(model, config)
    _check_optimizer(state["optimizer"], trainable, config)
    if state.get("schedule") is not None:
        LrSchedule.check_state(state["schedule"])
    if state.get("average") is not None:
        WeightAverage.check_state(state["average"], trainable)
    expected_hidden = model.init_state(config.batch_size, device="meta")
    if "ranks" in state:
        if "rng" in state or "hidden" in state:
            raise DamagedState("training_state", "has both per-rank and single-process entries")
        ranks = check_sequence("ranks", state["ranks"], world_size)
        for rank, mine in enumerate(ranks):
            check_mapping(f"ranks.{rank}", mine, ("rng",), ("hidden",))
            check_rng_state(mine["rng"], f"ranks.{rank}.rng")
            _check_hidden(f"ranks.{rank}.hidden", mine.get("hidden"), expected_hidden)
    else:
        if "rng" not in state:
            raise DamagedState("training_state", "has no rng")
        if world_size != 1:
            raise DamagedState("training_state", f"holds one process' state, not {world_size} (no ranks)")
        check_rng_state(state["rng"], "rng")
        _check_hidden("hidden", state.get("hidden"), expected_hidden)


def trainable_parameters(model: torch.nn.Module, config: TrainConfig) -> list[torch.Tensor]:
    """The parameters the optimizer and the weight average will hold, in their order.

    ``--freeze-embeddings`` is applied after the resume point is read, so it is mirrored here.
    """
    frozen = getattr(getattr(model, "embedding", None), "weight", None) if (
        config.embeddings and config.freeze_embeddings) else None
    return [p for p in model.parameters() if p.requires_grad and p is not frozen]


def _check_train_config(saved: dict[str, Any]) -> None:
    for name, kind in _TRAIN_CONFIG_TYPES.items():
        if name in saved and type(saved[name]) is not kind:
            raise DamagedState(f"train_config.{name}", f"is a {type(saved[name]).__name__}, expected {kind.__name__}")
    provenance = saved.get("provenance", {})
    if not isinstance(provenance, dict):
        raise DamagedState("train_config.provenance", f"is a {type(provenance).__name__}, expected a mapping")
    fingerprint = provenance.get("data_fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise DamagedState("train_config.provenance.data_fingerprint", "is not a string")


def _check_optimizer(saved: Any, params: list[torch.Tensor], config: TrainConfig) -> None:
    from rnnlm_cli.optimizers import make_optimizer_for

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
            raise DamagedState("optimizer.state", f"has an entry for {_name(index)}, not a parameter index")
        _check_param_state(f"optimizer.state.{index}", entry, params[index], config.optimizer)


def _check_group_value(field: str, key: str, value: Any, want: Any) -> None:
    from rnnlm_cli.optimizers import KERNEL_CHOICES

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
    check_tensor(f"{field}.step", entry["step"], torch.float32, (), low=0.0, high=float(_BIG))
    check_tensor(f"{field}.exp_avg", entry["exp_avg"], param.dtype, param.shape)
    check_tensor(f"{field}.exp_avg_sq", entry["exp_avg_sq"], param.dtype, param.shape, low=0.0)


def _check_hidden(field: str, hidden: Any, expected: tuple[torch.Tensor, ...]) -> None:
    if hidden is None:
        return
    check_sequence(field, hidden, len(expected))
    for index, (tensor, want) in enumerate(zip(hidden, expected)):
        check_tensor(f"{field}.{index}", tensor, _HIDDEN_DTYPES, want.shape)


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, (bool, int, float, str, type(None))) else f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."
