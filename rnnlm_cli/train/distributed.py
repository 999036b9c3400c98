"""Data-parallel training under ``torchrun`` (torch.distributed), and nothing when run alone.

``torchrun --nproc-per-node N -m rnnlm_cli train ...`` starts N processes with RANK,
WORLD_SIZE and LOCAL_RANK set; each trains on its own contiguous shard of the token
stream, gradients are averaged by DistributedDataParallel, validation losses are summed
across ranks, and only rank 0 writes files and logs. Decisions that must be the same on
every rank (skip a non-finite step, stop for a signal or a budget) are all-reduced.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from rnnlm_cli.device import resolve_device
from rnnlm_cli.errors import RnnlmError, UsageError


@dataclass(frozen=True)
class Dist:
    """This process' place in the run; ``world_size == 1`` when run alone."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Dist()


def setup(device_spec: str) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes (if any) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_spec)
    if world_size <= 1:
        return SINGLE, device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"local rank {local_rank} has no GPU: only {torch.cuda.device_count()} present")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise UsageError(f"torchrun training supports cuda and cpu devices, not {device.type}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size()), device


TEARDOWN_PAUSE = 0.05
"""Seconds the process lets go of the GIL before destroying its process group (see :func:`teardown`)."""


def teardown(context: Dist) -> None:
    if context.enabled and dist.is_initialized():
        # gloo's worker thread may still be finishing the last collective, and dropping its
        # tensor takes the GIL; the group's destructor joins that thread while holding the
        # GIL, so a run refused right after a collective could deadlock. Sleeping releases it.
        time.sleep(TEARDOWN_PAUSE)
        dist.destroy_process_group()


def shard(tokens: np.ndarray, context: Dist) -> np.ndarray:
    """This rank's contiguous, disjoint slice of a token stream (a view, no copy)."""
    if not context.enabled:
        return tokens
    size = len(tokens) // context.world_size
    return tokens[context.rank * size:(context.rank + 1) * size]


def max_all(values: list[float], context: Dist, device: torch.device) -> list[float]:
    """Element-wise maximum of ``values`` over all ranks (one small all-reduce)."""
    if not context.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def sum_all(values: list[float], context: Dist, device: torch.device) -> list[float]:
    if not context.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def gather_to_all(obj: Any, context: Dist) -> list[Any]:
    """Every rank's ``obj``, in rank order (small Python objects: states, RNG)."""
    if not context.enabled:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def from_main(produce, context: Dist):
    """Run ``produce()`` on rank 0 and hand its result, or its error, to every rank.

    Other ranks must not wait forever for a rank 0 that failed (a lock held elsewhere,
    bad data): they get the same error and exit code.
    """
    if not context.enabled:
        return produce()
    payload: list[Any] = [None]
    if context.is_main:
        try:
            payload[0] = ("ok", produce())
        except RnnlmError as exc:
            payload[0] = ("error", (str(exc), exc.exit_code))
            dist.broadcast_object_list(payload, src=0)
            raise
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if status == "error":
        error = RnnlmError(f"rank 0 failed: {value[0]}")
        error.exit_code = value[1]
        raise error
    return value
