"""What a run may spend, in steps and seconds, and what it tells of the time it will take.

The clock of one invocation starts when its training starts (tokenizing is not counted) and
includes the validations inside the loop. ``--max-time`` bounds an invocation; the share of
it spent (earlier invocations' training included) drives a cosine schedule, so a run that
the clock ends anneals over its budget on a slow machine as on a fast one.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from rnnlm_cli.config import TrainConfig

ESTIMATE_STEPS = 10
"""Steps timed (after the first) before the run's time is estimated..."""
ESTIMATE_SECONDS = 10.0
"""...or fewer, when they already take this long: a slow run is told early."""


class RunBudget:
    """One invocation's clock against ``--max-steps``, ``--epochs`` and ``--max-time``."""

    def __init__(self, config: TrainConfig, steps_per_epoch: int) -> None:
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        self.started = time.perf_counter()
        self.seconds_before = 0.0
        """Training seconds of the invocations before this one (a resumed run)."""
        self.steps_at_start = 0
        self.wall_limit: float | None = None
        """Seconds this invocation may train for --max-wall-time to hold (None: no such limit)."""
        self._estimate_from: tuple[int, float] | None = None
        self._estimated = False

    def start(self, step: int, seconds_before: float) -> None:
        """Start this invocation's clock at ``step``, after ``seconds_before`` of earlier training."""
        self.started = time.perf_counter()
        self.seconds_before, self.steps_at_start = seconds_before, step
        self._estimate_from, self._estimated = None, False

    def elapsed(self) -> float:
        """Seconds since this invocation's training started."""
        return time.perf_counter() - self.started

    @property
    def planned_steps(self) -> int:
        """The steps the run plans: --max-steps, else every epoch's (--max-time may end it sooner)."""
        return self.config.max_steps or self.config.epochs * self.steps_per_epoch

    def limit_wall(self, seconds: float) -> None:
        """Let this invocation train at most ``seconds`` (what --max-wall-time leaves it)."""
        self.wall_limit = seconds

    @property
    def limit(self) -> float | None:
        """Seconds this invocation may train: --max-time or the wall clock's limit, the sooner."""
        limits = [x for x in (self.config.max_time or None, self.wall_limit) if x is not None]
        return min(limits) if limits else None

    def time_reason(self) -> str:
        """Which clock ends the run: max_time, or max_wall_time when its limit comes first."""
        wall_first = self.wall_limit is not None and (not self.config.max_time or self.wall_limit < self.config.max_time)
        return "max_wall_time" if wall_first else "max_time"

    def share_spent(self, elapsed: float) -> float:
        """The share of the time budget used once ``elapsed`` seconds of this invocation have
        passed (0 without one): of --max-time over the whole run, or of the wall clock's
        limit over this invocation's part when that comes first."""
        if self.limit is None:
            return 0.0
        if self.time_reason() == "max_wall_time":
            horizon = self.seconds_before + self.wall_limit
        else:
            horizon = self.config.max_time
        return min((self.seconds_before + elapsed) / max(horizon, 1e-9), 1.0)

    def out_of_time(self, elapsed: float) -> bool:
        return self.limit is not None and elapsed >= self.limit

    def remaining_seconds(self, step: int, elapsed: float) -> float:
        """Training time left for the whole run, at this invocation's pace so far: the steps
        left, or what is left of --max-time when that comes first (validation not included)."""
        taken = step - self.steps_at_start
        left = max(self.planned_steps - step, 0) * elapsed / max(taken, 1)
        if self.limit is not None:
            left = min(left, max(self.limit - elapsed, 0.0))
        return left

    def estimate_once(self, step: int, tell: Callable[[dict[str, Any]], None]) -> None:
        """Tell ``tell``, once, what a step, an epoch and the whole run will take.

        Timed from the end of this invocation's first step (which pays for warm-up and
        allocation) over the next :data:`ESTIMATE_STEPS`, or fewer when they take over
        :data:`ESTIMATE_SECONDS`. Validation is not included."""
        if self._estimate_from is None:
            self._estimate_from = (step, time.perf_counter())
            return
        first_step, first_time = self._estimate_from
        taken, elapsed = step - first_step, time.perf_counter() - first_time
        if taken <= 0 or (taken < ESTIMATE_STEPS and elapsed < ESTIMATE_SECONDS) or self._estimated:
            return
        self._estimated = True
        per_step, remaining = elapsed / taken, max(self.planned_steps - step, 0)
        spent = time.perf_counter() - self.started
        tell({
            "seconds_per_step": per_step, "seconds_per_epoch": per_step * self.steps_per_epoch,
            "planned_steps": self.planned_steps, "remaining_steps": remaining, "remaining_seconds": per_step * remaining,
            "max_time_left": max(self.limit - spent, 0.0) if self.limit is not None else None,
            "clock": "--max-wall-time" if self.time_reason() == "max_wall_time" else "--max-time",
            "timed_steps": taken,
        })
