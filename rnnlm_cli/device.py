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


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware: a CUDA GPU that supports
    bf16, or a CPU with AMX tiles (Intel Sapphire Rapids and later), where bf16 runs the
    matrix products several times faster than float32. Elsewhere bf16 is emulated and slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(probe is not None and probe())
    return False


def cpu_bf16_kernels() -> bool:
    """Whether torch's CPU kernels (oneDNN) can compute in bf16 here: they need AVX-512 or
    AMX; on an AVX2-only CPU the recurrent layers cannot run under bf16 autocast at all."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(probe is not None and probe())
    except RuntimeError:
        return False


def amp_enabled(mode: str, device: torch.device) -> bool:
    """bf16 autocast: ``auto`` where the hardware has native bf16, ``bf16`` on any CUDA
    device and a CPU whose kernels can compute in bf16 (UsageError on one that cannot),
    ``off`` never."""
    if mode == "auto":
        return native_bf16(device)
    if mode == "bf16" and device.type == "cpu" and not cpu_bf16_kernels():
        raise UsageError("--amp bf16: this CPU has no bf16 instructions (AVX-512 or AMX) for torch's "
                         "kernels to use; train and score in float32 with --amp off (or auto)")
    return mode == "bf16" and device.type in ("cuda", "cpu")


def bf16_autocast(device: torch.device, enabled: bool):
    """What mixed precision means everywhere here: bf16 autocast on ``device`` when
    ``enabled`` (matrix products in bf16; losses and log-softmaxes stay float32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
