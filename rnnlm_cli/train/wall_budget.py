"""What ``--max-wall-time`` leaves a run to train, and the refusal when that is too little.

The wall clock starts with the command. Before the first step a run knows what reading and
encoding the data took; it times a validation on a slice of the validation tokens (the final
validation, and promotion's scoring, must still fit after training) and one training step
(:func:`~rnnlm_cli.train.speed_probe.seconds_per_step`, on a throwaway copy of the model).
What is left after them is training time.

A run left seconds for one step would validate a model barely past its initial weights and
exit 0 (``--max-wall-time 100`` on an 11 MB corpus: one step, ppl 17,021), which a cron job
counts as a good night. Such a run is refused before its first step with
:class:`~rnnlm_cli.errors.TooLittleTimeError` (exit 4) and the time it would need. By then
the token files beside ``--out`` may have been written (a rerun reuses them); no model, state
or metrics file has been (the metrics file is opened at its first record).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.errors import TooLittleTimeError
from rnnlm_cli.train.speed_probe import TIMED_STEPS, WARMUP_STEPS, seconds_per_step
from rnnlm_cli.train.state import capture_rng, restore_rng
from rnnlm_cli.train.validation import seconds_a_token

SAVE_SECONDS = 3.0
"""Seconds --max-wall-time keeps for writing the model and the training state at the end."""
VALIDATION_MARGIN = 1.25
"""The slice a validation is timed on runs warm: a full validation is given a quarter more."""
MIN_STEPS = 50
"""The fewest steps worth a run: fewer leave a model little past its initial weights,
whatever the corpus (unless the run plans fewer, or has fewer left)."""
MIN_EPOCH_SHARE = 0.01
"""...or this share of an epoch, when that is more (a large corpus needs more steps before
its model says much about it)..."""
MAX_MIN_STEPS = 500
"""...but never more than this many: a short run on a huge corpus is still a real run."""


def fewest_steps(steps_per_epoch: int, steps_left: int) -> int:
    """The fewest steps a run must have time for: ``MIN_STEPS``, or ``MIN_EPOCH_SHARE`` of an
    epoch up to ``MAX_MIN_STEPS`` when that is more, and never more than the steps it has left."""
    worth = max(MIN_STEPS, min(math.ceil(MIN_EPOCH_SHARE * steps_per_epoch), MAX_MIN_STEPS))
    return max(min(worth, steps_left), 0)


@dataclass(frozen=True)
class WallBudget:
    """How --max-wall-time splits once the data is read: what is left, what the validations
    and saves after training keep, and whether the rest buys the fewest steps worth a run."""

    max_wall_time: float
    """The --max-wall-time given, in seconds."""
    wall_left: float
    """Seconds left of it now, before the first step (negative once it has passed)."""
    reserve: float
    """Seconds kept for the validations and saves after training."""
    seconds_per_step: float
    """A training step's seconds, as the speed probe timed it."""
    fewest_steps: int
    """The fewest steps worth training (:func:`fewest_steps`)."""
    validations_after: int = 1
    """The validations kept for: the final one, and promotion's scoring."""

    @property
    def training_seconds(self) -> float:
        """Seconds the run may train: what is left once the reserve is kept, never negative."""
        return max(self.wall_left - self.reserve, 0.0)

    @property
    def needed(self) -> float:
        """The --max-wall-time that would have bought the fewest steps worth training."""
        spent = self.max_wall_time - self.wall_left
        return spent + self.reserve + self.fewest_steps * self.seconds_per_step

    def check(self) -> None:
        """Refuse (exit 4) a budget that does not buy :attr:`fewest_steps` at the probe's speed."""
        if self.training_seconds >= self.fewest_steps * self.seconds_per_step:
            return
        kept = "the final validation, promotion's scoring" if self.validations_after > 1 else "the final validation"
        raise TooLittleTimeError(
            f"--max-wall-time {self.max_wall_time:g} leaves {self.training_seconds:,.0f} s to train after "
            f"{self.max_wall_time - self.wall_left:,.0f} s of reading the data and timing a step, and {self.reserve:,.0f} s kept for "
            f"{kept} and saving; give at least {math.ceil(self.needed):,} s ({self.fewest_steps:,} steps at "
            f"{self.seconds_per_step:.3g} s a step, the fewest worth training); nothing was trained or saved")

    def to_dict(self) -> dict[str, float]:
        """The figures ``on_wall_budget`` hears, ``training_seconds`` among them."""
        return {**asdict(self), "training_seconds": self.training_seconds}


def fit_wall_clock(model: torch.nn.Module, valid_tokens: np.ndarray, streams, config: TrainConfig,
                   device: torch.device, dist, deadline: float, validations_after: int, fewest: int) -> WallBudget:
    """What --max-wall-time (ending at ``deadline``, ``time.monotonic``) leaves this run to train,
    checked (exit 4) against ``fewest`` steps. Every rank must decide alike and stop at the
    same step: they agree on the largest reserve, the least time left and the slowest step."""
    from rnnlm_cli.train.distributed import max_all

    reserve = validation_reserve(model, valid_tokens, config, device, validations_after)
    per_step = time_a_step(model, streams, config, device)
    reserve, negative_left, per_step = max_all([reserve, -(deadline - time.monotonic()), per_step], dist, device)
    wall = WallBudget(config.max_wall_time, -negative_left, reserve, per_step, fewest, validations_after)
    wall.check()
    return wall


def validation_reserve(model: torch.nn.Module, valid_tokens: np.ndarray, config: TrainConfig,
                       device: torch.device, validations: int) -> float:
    """Seconds to keep for ``validations`` full validations and the saves after training."""
    per_token = seconds_a_token(model, valid_tokens, config.eval_batch_size, config.bptt, device)
    return VALIDATION_MARGIN * per_token * len(valid_tokens) * validations + SAVE_SECONDS


def time_a_step(model: torch.nn.Module, streams, config: TrainConfig, device: torch.device) -> float:
    """A training step's seconds for ``model``'s shape, timed on a throwaway copy (the run's
    weights are untouched) over the first tokens of ``streams`` (B, L + 1). The random
    generators are put back after it, so the run draws what it would have without it."""
    columns = min(streams.shape[1], config.bptt * (WARMUP_STEPS + TIMED_STEPS) + 1)
    tokens = np.ascontiguousarray(np.asarray(streams[:, :columns])).reshape(-1)  # B streams' starts, end to end
    rng = capture_rng()
    try:
        return seconds_per_step(model.config, config, tokens, device)
    finally:
        restore_rng(rng)
