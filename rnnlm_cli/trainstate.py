"""What a resumable training run saves beside its weights, and what it records for reproducing it.

Resuming is exact: with the same data and ``--deterministic``, N steps in one run and
N/2 + N/2 across a stop give bitwise-identical weights. That needs, beyond weights and
optimizer: the position in the data (epoch and token position), the hidden state carried into
the next segment, every random number generator's state, and the counters.
"""

from __future__ import annotations

import hashlib
import os
import platform
import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from rnnlm_cli import __version__

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
        progress = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        if "position" not in data:  # saved before positions were kept: fixed-length segments
            progress.position = progress.segment * bptt
        return progress


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
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    _restore_numpy_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
