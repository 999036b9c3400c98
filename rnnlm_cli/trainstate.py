"""What a resumable training run saves beside its weights, and what it records for reproducing it.

Resuming is exact: with the same data and ``--deterministic``, N steps in one run and
N/2 + N/2 across a stop give bitwise-identical weights. That needs, beyond weights and
optimizer: the position in the data (epoch and token position), the hidden state carried into
the next segment, every random number generator's state, and the counters.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from rnnlm_cli import __version__
from rnnlm_cli.state_checks import (DamagedState, check_int, check_mapping, check_number, check_sequence,
                                    check_tensor)

_HASH_BLOCK = 1 << 22  # tokens per hashing block


@dataclass
class Progress:
    """Where a run is; saved in ``<stem>.last.pt`` and restored by ``--resume``."""

    epoch: int = 1
    """The epoch in progress (1-based)."""
    segment: int = 0
    """BPTT segments trained on within the epoch."""
    position: int = 0
    """Tokens of each stream trained on within the epoch: where the next segment starts."""
    step: int = 0
    """Optimizer steps taken (skipped non-finite steps not included)."""
    train_tokens: int = 0
    best_valid_loss: float = float("inf")
    best_step: int = -1
    skipped_steps: int = 0
    """Steps skipped for a non-finite loss or gradient, over the whole run."""
    train_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], bptt: int) -> "Progress":
        """The saved progress, every field checked (DamagedState, exit 65, for any other)."""
        # Older files lack later fields: those keep their defaults.
        check_mapping("progress", data, (), tuple(cls.__dataclass_fields__))
        for name, low in _PROGRESS_INTS.items():
            if name in data:
                check_int(f"progress.{name}", data[name], low)
        if "best_valid_loss" in data:
            check_number("progress.best_valid_loss", data["best_valid_loss"], infinite=True)
        if "train_seconds" in data:
            check_number("progress.train_seconds", data["train_seconds"])
        progress = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        if "position" not in data:  # saved before positions were kept: fixed-length segments
            progress.position = progress.segment * bptt
        return progress


_PROGRESS_INTS = {"epoch": 1, "segment": 0, "position": 0, "step": 0, "train_tokens": 0, "best_step": -1,
                  "skipped_steps": 0}
"""Progress's integer fields and their least values."""
_MT_WORDS = 624  # the Mersenne Twister state of Python, numpy and torch's CPU generator
_CUDA_STATE_BYTES = 16  # torch's Philox generator: a 64-bit seed and a 64-bit offset


def capture_rng() -> dict[str, Any]:
    """Every generator training draws from, as tensors and plain data."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": _numpy_state_as_tensor(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set every generator from :func:`capture_rng`'s dict; DamagedState (exit 65) for any
    state that is not one capture_rng could have made."""
    check_rng_state(state)
    try:
        torch.set_rng_state(state["torch"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        _restore_numpy_state(state["numpy"])
        if "cuda" in state and torch.cuda.is_available():
            # A run saved on more GPUs than this machine has: the devices here are restored.
            torch.cuda.set_rng_state_all(state["cuda"][:torch.cuda.device_count()])
    except (RuntimeError, ValueError, TypeError) as exc:
        raise DamagedState("rng", f"is refused by the generator ({str(exc).splitlines()[0][:80]})") from exc


def check_rng_state(state: Any, field: str = "rng") -> None:
    """Refuse (DamagedState) anything but generator states of exactly the saved layout."""
    check_mapping(field, state, ("torch", "python", "numpy"), ("cuda",))
    check_tensor(f"{field}.torch", state["torch"], torch.uint8, tuple(torch.get_rng_state().shape))
    version, internal, gauss = check_sequence(f"{field}.python", state["python"], 3)
    check_int(f"{field}.python.version", version, 3, 3)
    check_sequence(f"{field}.python.state", internal, _MT_WORDS + 1)
    for index, word in enumerate(internal[:_MT_WORDS]):
        check_int(f"{field}.python.state.{index}", word, 0, 2**32 - 1)
    check_int(f"{field}.python.state.{_MT_WORDS}", internal[_MT_WORDS], 0, _MT_WORDS)
    if gauss is not None:
        check_number(f"{field}.python.gauss", gauss, -math.inf, math.inf)
    numpy = check_mapping(f"{field}.numpy", state["numpy"], ("name", "keys", "pos", "has_gauss", "cached"))
    if numpy["name"] != "MT19937":
        raise DamagedState(f"{field}.numpy.name", "is not MT19937")
    check_tensor(f"{field}.numpy.keys", numpy["keys"], torch.int64, (_MT_WORDS,), low=0, high=2**32 - 1)
    check_int(f"{field}.numpy.pos", numpy["pos"], 0, _MT_WORDS)
    check_int(f"{field}.numpy.has_gauss", numpy["has_gauss"], 0, 1)
    check_number(f"{field}.numpy.cached", numpy["cached"], -math.inf, math.inf)
    if "cuda" in state:
        devices = state["cuda"]
        if not isinstance(devices, (list, tuple)) or not devices or len(devices) > 1024:
            raise DamagedState(f"{field}.cuda", "is not a list of per-GPU generator states")
        for index, device_state in enumerate(devices):
            check_tensor(f"{field}.cuda.{index}", device_state, torch.uint8, (_CUDA_STATE_BYTES,))


def _numpy_state_as_tensor() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _restore_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Ask torch, cuDNN and cuBLAS for reproducible kernels (slower on GPU)."""
    if enabled:
        # cuBLAS reads this when its first handle is made, so it must be set before CUDA work.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = False


def data_fingerprint(tokens: np.ndarray) -> str:
    """A hash of the token ids themselves, read block by block (bounded memory)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(len(tokens)).encode())
    for start in range(0, len(tokens), _HASH_BLOCK):
        digest.update(np.ascontiguousarray(tokens[start:start + _HASH_BLOCK]).astype("<u4").tobytes())
    return digest.hexdigest()


def environment(device: torch.device) -> dict[str, Any]:
    """Library versions and hardware, stored so a result can be traced and reproduced."""
    info = {
        "rnnlm": __version__, "torch": str(torch.__version__), "numpy": np.__version__,
        "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
