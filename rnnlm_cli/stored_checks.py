"""Checks of what a file written elsewhere holds (a checkpoint, a training state), made before
any of it is used. They sit in the base layer, below the checkpoint format: a learning-rate
schedule or a gradient tally checks its own stored state with them without depending on it.

A loaded tensor is only metadata over a storage read from the file: its shape and strides
say how much memory an operation on it will touch or allocate. An expanded view
(``torch.zeros(1).expand(10**9)``) is 4 bytes in the file and a gigabyte once anything
materialises it, and a moment of the wrong shape sends torch's fused optimizer kernels
past the end of their buffers. So every tensor is first checked on its metadata alone
(:func:`check_dense`: dense, on the CPU, contiguous, starting at its storage's start, and
exactly as large as that storage), and only then, against the shape and dtype the model
config implies, on its values.

The checks here know nothing of training: the training state of a ``.last.pt`` file is
checked field by field with them by ``rnnlm_cli.train.state`` (``TrainState.from_dict``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rnnlm_cli.errors import CheckpointError

_DTYPES = frozenset({torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.int8,
                     torch.int16, torch.int32, torch.int64, torch.bool})
BIG_COUNT = 1 << 62
"""The largest count accepted: counters far past it overflow torch's and numpy's int64 arithmetic."""


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


def check_int(field: str, value: Any, low: int = 0, high: int = BIG_COUNT) -> int:
    if type(value) is not int:  # bool is an int to Python, but never a count
        raise DamagedState(field, f"is a {type(value).__name__}, expected an integer")
    if not low <= value <= high:
        shown = value if value.bit_length() <= 64 else "a huge integer"
        raise DamagedState(field, f"is {shown}, expected {low}..{high}" if high < BIG_COUNT
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
        raise DamagedState(field, f"has an unknown entry {key_name(unknown[0])}")
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
                stack.append((f"{field}.{key_name(key)}" if field else key_name(key), item, depth + 1))


def key_name(key: Any) -> str:
    """A mapping key as a field name fit for one error line."""
    if isinstance(key, int) and not isinstance(key, bool) and key.bit_length() <= 64:
        return str(key)
    if isinstance(key, str) and key.isprintable():
        return key if len(key) <= 40 else key[:37] + "..."
    return f"a {type(key).__name__} key" if not isinstance(key, str) else "an unprintable key"
