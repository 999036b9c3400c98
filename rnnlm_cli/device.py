"""Choosing the device a model runs on."""

from __future__ import annotations

import re

import torch

from rnnlm_cli.errors import UsageError

_CUDA_INDEX = re.compile(r"^cuda:(\d+)$")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N|mps`` into a device, refusing one this machine does not have.

    ``auto`` prefers CUDA, then Apple's MPS, then the CPU.
    """
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise UsageError("--device mps: Apple MPS is not available on this machine")
        return torch.device("mps")
    match = _CUDA_INDEX.match(spec)
    if spec == "cuda" or match:
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec}: no CUDA GPU is available on this machine (try --device auto)")
        index = int(match.group(1)) if match else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
        return torch.device("cuda", index)
    raise UsageError(f"--device {spec!r}: expected auto, cpu, cuda, cuda:N or mps")


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so wall-clock figures measure finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
