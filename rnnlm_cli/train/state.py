"""What a resumable training run saves beside its weights, and what it records for reproducing it.

Resuming is exact: with the same data and ``--deterministic``, N steps in one run and
N/2 + N/2 across a stop give bitwise-identical weights. That needs, beyond weights and
optimizer: the position in the data (epoch and token position), the hidden state carried into
the next segment, every random number generator's state, and the counters.
:class:`TrainState` is the one layout of all that in ``<stem>.last.pt`` (its
``training_state``), written by the loop and checked field by field before a resume uses any.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import random
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rnnlm_cli import __version__
from rnnlm_cli.config import TrainConfig
from rnnlm_cli.errors import CheckpointError
from rnnlm_cli.stored_checks import (DamagedState, check_int, check_mapping, check_number, check_sequence,
                                    check_tensor)
from rnnlm_cli.train.grad_norms import NormTally
from rnnlm_cli.train.overfitting import OverfitWatch
from rnnlm_cli.train.schedules import LrSchedule, WeightAverage
from rnnlm_cli.train.state_checks import check_hidden, check_optimizer, check_train_config, trainable_parameters

if TYPE_CHECKING:
    from rnnlm_cli.store.checkpoint import Checkpoint

_HASH_BLOCK = 1 << 22  # tokens per hashing block


@dataclass
class RunPosition:
    """Where a run is in its data, and its counters; the loop advances it in place.

    Saved as ``progress`` in the training state of ``<stem>.last.pt``.
    """

    epoch: int = 1
    """The epoch in progress (1-based)."""
    segment: int = 0
    """BPTT segments trained on within the epoch."""
    position: int = 0
    """Tokens of each stream trained on within the epoch: where the next segment starts."""
    step: int = 0
    """Optimizer steps taken (skipped non-finite steps not included)."""
    train_tokens: int = 0
    """Target tokens trained on, over the whole run."""
    best_valid_loss: float = float("inf")
    """The lowest validation loss so far (nats per token); inf before the first finite one."""
    best_step: int = -1
    """The step the best validation loss was measured at; -1 before there is one."""
    skipped_steps: int = 0
    """Steps skipped for a non-finite loss or gradient, over the whole run."""
    train_seconds: float = 0.0
    """Seconds spent training (validation not included), over the whole run."""
    grad_norms: NormTally = field(default_factory=NormTally)
    """The steps' gradient norms, counted; how often --clip fired (see :mod:`.grad_norms`)."""
    overfit_watch: OverfitWatch = field(default_factory=OverfitWatch)
    """Training against validation loss at the last validations (see :mod:`.overfitting`)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], bptt: int) -> "RunPosition":
        """The saved position, every field checked (DamagedState, exit 65, for any other).

        ``bptt`` places a position saved before positions were kept: at ``segment * bptt``.
        """
        # Older files lack later fields: those keep their defaults.
        check_mapping("progress", data, (), tuple(cls.__dataclass_fields__))
        for name, low in _POSITION_INTS.items():
            if name in data:
                check_int(f"progress.{name}", data[name], low)
        if "best_valid_loss" in data:
            check_number("progress.best_valid_loss", data["best_valid_loss"], infinite=True)
        if "train_seconds" in data:
            check_number("progress.train_seconds", data["train_seconds"])
        tally = NormTally.from_dict(data["grad_norms"]) if "grad_norms" in data else NormTally()
        watch = OverfitWatch.from_dict(data["overfit_watch"]) if "overfit_watch" in data else OverfitWatch()
        position = cls(**{k: data[k] for k in cls.__dataclass_fields__
                          if k in data and k not in ("grad_norms", "overfit_watch")},
                       grad_norms=tally, overfit_watch=watch)
        if "position" not in data:  # saved before positions were kept: fixed-length segments
            position.position = position.segment * bptt
        return position


_POSITION_INTS = {"epoch": 1, "segment": 0, "position": 0, "step": 0, "train_tokens": 0, "best_step": -1,
                  "skipped_steps": 0}
"""RunPosition's integer fields and their least values."""

STATE_VERSION = 1
"""The layout of the training state this rnnlm writes and the newest it reads.

Files written before the layout carried a version have none: they are version 1.
"""
_STATE_REQUIRED = ("optimizer", "progress")
_STATE_OPTIONAL = ("state_version", "world_size", "schedule", "average", "rng", "hidden", "ranks")
_RESUME_ADVICE = "resume from an intact .last.pt, or start anew with --init-from the model"


@dataclass(frozen=True)
class RankState:
    """What one process carries from a segment to the next, beside the shared weights."""

    rng: dict[str, Any]
    """Every random generator's state, as :func:`capture_rng` returns it."""
    hidden: tuple[torch.Tensor, ...] | None = None
    """The hidden state carried into the next segment, on the CPU; None at an epoch's start."""

    def to_dict(self) -> dict[str, Any]:
        return {"rng": self.rng, "hidden": self.hidden}


@dataclass(frozen=True)
class TrainState:
    """The training state of ``<stem>.last.pt``: everything ``--resume`` needs beside the weights.

    On disk (:meth:`to_dict`) a run of one process keeps its :class:`RankState` at the
    top level (``rng``, ``hidden``); a run under torchrun keeps a list ``ranks``.
    """

    progress: RunPosition
    """Where the run is in its data, and its counters (saved as ``progress``)."""
    optimizer: dict[str, Any]
    """The optimizer's ``state_dict``."""
    ranks: tuple[RankState, ...]
    """Each process' generators and hidden state, in rank order; one when run alone."""
    schedule: dict[str, Any] | None = None
    """The learning-rate schedule's ``state_dict``; None in files from before it was saved."""
    average: dict[str, Any] | None = None
    """The weight average's ``state_dict``; None until NT-ASGD starts averaging."""
    version: int = STATE_VERSION
    """The layout version (saved as ``state_version``)."""

    @property
    def world_size(self) -> int:
        return len(self.ranks)

    def to_dict(self) -> dict[str, Any]:
        state = {"state_version": self.version, "optimizer": self.optimizer, "progress": self.progress.to_dict(),
                 "world_size": self.world_size, "schedule": self.schedule, "average": self.average}
        if self.world_size == 1:
            state.update(self.ranks[0].to_dict())
        else:
            state["ranks"] = [rank.to_dict() for rank in self.ranks]
        return state

    @classmethod
    def from_dict(cls, data: Any, model: torch.nn.Module, config: TrainConfig, world_size: int = 1) -> "TrainState":
        """The saved state, every field checked against ``model`` (the model being resumed,
        built from the checkpoint's config) and ``config`` (this run's settings), for a run
        of ``world_size`` processes. Nothing in ``data`` is assumed well-formed, and nothing
        is changed.

        DamagedState (exit 65) names the first field that ``--resume`` could not use as it
        is; a state of a newer layout is a CheckpointError (exit 65) that says to upgrade.
        """
        if not isinstance(data, dict):
            raise DamagedState("training_state", f"is a {type(data).__name__}, expected a mapping")
        version = check_int("state_version", data.get("state_version", 1), 1)
        if version > STATE_VERSION:
            raise CheckpointError(f"training state version {version} is newer than this rnnlm reads "
                                  f"(version {STATE_VERSION}); upgrade rnnlm to resume it")
        check_mapping("training_state", data, _STATE_REQUIRED, _STATE_OPTIONAL)
        saved_world = check_int("world_size", data.get("world_size", 1), 1, 1 << 20)
        progress = RunPosition.from_dict(data["progress"], config.bptt)
        trainable = trainable_parameters(model, config)
        check_optimizer(data["optimizer"], trainable, config)
        if data.get("schedule") is not None:
            LrSchedule.check_state(data["schedule"])
        if data.get("average") is not None:
            WeightAverage.check_state(data["average"], trainable)
        ranks = _ranks_from_dict(data, model.init_state(config.batch_size, device="meta"), world_size)
        if saved_world != len(ranks):
            raise DamagedState("world_size", f"is {saved_world}, but the state holds {len(ranks)} process(es)")
        return cls(progress=progress, optimizer=data["optimizer"], ranks=ranks, schedule=data.get("schedule"),
                   average=data.get("average"), version=version)


def _ranks_from_dict(data: dict[str, Any], expected_hidden: tuple[torch.Tensor, ...],
                     world_size: int) -> tuple[RankState, ...]:
    """Each process' checked :class:`RankState`; ``expected_hidden`` is a fresh state (on "meta")."""
    if "ranks" in data:
        if "rng" in data or "hidden" in data:
            raise DamagedState("training_state", "has both per-rank and single-process entries")
        entries = check_sequence("ranks", data["ranks"], world_size)
        prefixes = [f"ranks.{rank}." for rank in range(world_size)]
    else:
        if "rng" not in data:
            raise DamagedState("training_state", "has no rng")
        if world_size != 1:
            raise DamagedState("training_state", f"holds one process' state, not {world_size} (no ranks)")
        entries, prefixes = [data], [""]
    ranks = []
    for prefix, entry in zip(prefixes, entries):
        if prefix:
            check_mapping(prefix[:-1], entry, ("rng",), ("hidden",))
        check_rng_state(entry["rng"], f"{prefix}rng")
        hidden = entry.get("hidden")
        check_hidden(f"{prefix}hidden", hidden, expected_hidden)
        ranks.append(RankState(rng=entry["rng"], hidden=None if hidden is None else tuple(hidden)))
    return tuple(ranks)


def check_training_state(path: str, checkpoint: Checkpoint, model: torch.nn.Module,
                         config: TrainConfig, world_size: int) -> TrainState:
    """``checkpoint``'s training state, checked with its resume settings (see
    :meth:`TrainState.from_dict`); any refusal is a CheckpointError naming ``path`` (and the
    field). The weights were checked against the stored config when the file was loaded.
    """
    try:
        check_train_config(checkpoint.train_config)
        return TrainState.from_dict(checkpoint.training_state, model, config, world_size)
    except DamagedState as exc:
        raise CheckpointError(f"{path}: training state is damaged ({exc.field} {exc.problem}); "
                              f"{_RESUME_ADVICE}") from None
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


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
