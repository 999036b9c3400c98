"""What a run may spend, in steps and seconds, and what it tells of the time it will take.

The clock of one invocation starts when its training starts (tokenizing is not counted) and
includes the validations inside the loop. ``--max-time`` bounds an invocation; the share of
it spent (earlier invocations' training included) drives a cosine schedule, so a run that
the clock ends anneals over its budget on a slow machine as on a fast one.

The run's time is estimated from the same clock, validations included, and judged again as
the run goes (:class:`PaceWatch`): one estimate from the first ten steps can be far off (a
night run told "near step 33" stopped at step 196). While the pace rests on few steps,
varies, or moved since the judgement before, it is a range; a new estimate is told only
when it moves the run's predicted end.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from rnnlm_cli.config import TrainConfig

ESTIMATE_STEPS = 10
"""Steps timed (after the first) before the run's time is first estimated..."""
ESTIMATE_SECONDS = 10.0
"""...or fewer, when they already take this long: a slow run is told early. The estimate is
judged again at each doubling of the steps or the seconds timed."""
FEW_STEPS = 50
"""Until this many steps are timed, the pace is given as a range at least :data:`FEW_SPREAD`
either way, however steady the steps: a run's first steps run on cold caches, before the
allocator settles, and with no validation yet (the quickstart's first estimate, from 10
steps, said 13.6 min for a run of 9.4)."""
FEW_SPREAD = 0.25
NARROW = 0.1
"""A pace known to within this share either way is given as one number, not a range."""
MOVED = 0.2
"""A judgement is told again only when the run's predicted end (the seconds it takes, or the
step its clock stops it at) moved by more than this share since the estimate last told..."""
REFRESH_SECONDS = 60.0
"""...and no sooner than this after it: stderr carries a few estimates, not a stream."""


@dataclass(frozen=True)
class Pace:
    """The seconds a step takes, as far as the clock can tell so far."""

    seconds: float
    """The likeliest: the pace of the steps since the judgement before (warm-up fades)."""
    low: float
    high: float
    """The range the pace may lie in: this stretch's pace and the one's before it, widened by
    the noise of single steps (twice the standard error of their mean) or, for few steps,
    by :data:`FEW_SPREAD`."""
    timed_steps: int

    @property
    def uncertain(self) -> bool:
        """Whether the range is wider than :data:`NARROW` either way (a range, not one number)."""
        return self.high > self.seconds * (1 + NARROW) or self.low < self.seconds / (1 + NARROW)


class _Spread:
    """Mean and variance of single steps' seconds, kept as they come (Welford, 1962)."""

    def __init__(self) -> None:
        self.count, self.mean, self._squares = 0, 0.0, 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        delta = seconds - self.mean
        self.mean += delta / self.count
        self._squares += delta * (seconds - self.mean)

    def relative_error(self) -> float:
        """Twice the standard error of the mean, over the mean: the pace's 95% band, for steps
        that vary independently (a drift shows between stretches instead)."""
        if self.count < 2 or self.mean <= 0:
            return 0.0
        return 2 * math.sqrt(self._squares / (self.count - 1) / self.count) / self.mean


class PaceWatch:
    """A run's pace from the clock read after each step.

    Timing starts at the end of the first step seen (which pays for warm-up and allocation);
    a skipped step's time goes to the next step taken, and a validation's to the step after
    it, as the clock that ends a run counts them. Judgements come after :data:`ESTIMATE_STEPS`
    steps or :data:`ESTIMATE_SECONDS`, then at each doubling of the steps or seconds timed;
    each cuts what was timed since the judgement before: its pace is the likeliest (warm-up
    fades), the pace of the stretch before it says how far the pace moved, and its single steps
    how much the pace varies.
    """

    def __init__(self) -> None:
        self._origin: tuple[int, float] | None = None
        self._since: tuple[int, float] | None = None
        """(step, time) where the stretch the next judgement reads starts."""
        self._last = (0, 0.0)
        self._due = (ESTIMATE_STEPS, ESTIMATE_SECONDS)
        self._steps = _Spread()
        self._before: float | None = None
        """The pace judged last time (of the stretch before the one judged now)."""

    @property
    def started(self) -> bool:
        return self._origin is not None

    def observe(self, step: int, now: float) -> bool:
        """Note that the clock reads ``now`` with ``step`` steps taken; whether a judgement is due."""
        if self._origin is None:
            self._origin = self._last = (step, now)
            return False
        if step <= self._last[0]:
            return False  # a skipped step: its time goes to the next step taken
        self._steps.add((now - self._last[1]) / (step - self._last[0]))
        self._last = (step, now)
        taken, seconds = step - self._origin[0], now - self._origin[1]
        if taken >= self._due[0] or seconds >= self._due[1]:
            return True
        if self._since is None and (taken >= self._due[0] / 2 or seconds >= self._due[1] / 2):
            self._since, self._steps = self._last, _Spread()
        return False

    def judge(self) -> Pace:
        """The pace now; the next judgement comes at the doubling of what is timed."""
        (first_step, first_time), (step, now) = self._origin, self._last
        since_step, since_time = self._since if self._since is not None and self._since[0] < step else self._origin
        late = (now - since_time) / (step - since_step)
        early = self._before
        if early is None:  # the first judgement: the first half of its steps (see observe)
            early = (since_time - first_time) / (since_step - first_step) if since_step > first_step else late
        self._before = late
        noise = self._steps.relative_error()
        if step - first_step < FEW_STEPS:
            noise = max(noise, FEW_SPREAD)
        self._due = (2 * (step - first_step), 2 * (now - first_time))
        self._since, self._steps = self._last, _Spread()
        return Pace(late, min(early, late) / (1 + noise), max(early, late) * (1 + noise), step - first_step)

    def judge_again_at(self, when: float) -> None:
        """Judge again once the clock reads ``when``, if a doubling does not come first."""
        self._due = (self._due[0], min(self._due[1], when - self._origin[1]))


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
        self._pace = PaceWatch()
        self._told: tuple[float, bool, float] | None = None
        """The estimate last told: the run's predicted end, whether the clock ends it, and when."""
        self._validations = 0
        """Validations since timing started: the estimate's clock holds them."""

    def start(self, step: int, seconds_before: float) -> None:
        """Start this invocation's clock at ``step``, after ``seconds_before`` of earlier training."""
        self.started = time.perf_counter()
        self.seconds_before, self.steps_at_start = seconds_before, step
        self._pace, self._told, self._validations = PaceWatch(), None, 0

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

    def validated(self) -> None:
        """Note a validation: the estimates after it include its time, as the clock does."""
        self._validations += self._pace.started

    def estimate(self, step: int, tell: Callable[[dict[str, Any]], None]) -> None:
        """Tell ``tell`` what a step, an epoch and the rest of the run will take, with ``step``
        steps taken: first after the first steps (see :class:`PaceWatch`), then again when a
        later judgement moves the run's predicted end by over :data:`MOVED`, at most once in
        :data:`REFRESH_SECONDS`. An uncertain pace comes as a range (``*_low``, ``*_high``)."""
        now = time.perf_counter()
        if not self._pace.observe(step, now):
            return
        estimate = self._estimate(step, self._pace.judge(), now - self.started)
        clock_first = estimate["clock_ends_run"]
        end = estimate["stop_step"] if clock_first else now - self.started + estimate["remaining_seconds"]
        if self._told is not None:
            told_end, told_clock_first, told_at = self._told
            if told_clock_first == clock_first and abs(end - told_end) <= MOVED * abs(told_end):
                return
            if now - told_at < REFRESH_SECONDS:
                self._pace.judge_again_at(told_at + REFRESH_SECONDS)
                return
        self._told = (end, clock_first, now)
        tell(estimate)

    def _estimate(self, step: int, pace: Pace, spent: float) -> dict[str, Any]:
        """The figures :meth:`estimate` tells, at ``pace`` after ``spent`` seconds of this invocation."""
        remaining = max(self.planned_steps - step, 0)
        left = max(self.limit - spent, 0.0) if self.limit is not None else None
        clock_first = left is not None and left < pace.seconds * remaining

        def stop_at(per_step: float) -> int | None:
            return min(step + int(left / max(per_step, 1e-12)), self.planned_steps) if clock_first else None

        return {
            "first": self._told is None, "range": pace.uncertain, "step": step, "timed_steps": pace.timed_steps,
            "validations_timed": self._validations,
            "seconds_per_step": pace.seconds, "seconds_per_step_low": pace.low, "seconds_per_step_high": pace.high,
            "seconds_per_epoch": pace.seconds * self.steps_per_epoch, "planned_steps": self.planned_steps,
            "remaining_steps": remaining, "remaining_seconds": pace.seconds * remaining,
            "remaining_low": pace.low * remaining, "remaining_high": pace.high * remaining,
            "max_time_left": left, "clock": "--max-wall-time" if self.time_reason() == "max_wall_time" else "--max-time",
            "clock_ends_run": clock_first,
            "stop_step": stop_at(pace.seconds), "stop_step_low": stop_at(pace.high), "stop_step_high": stop_at(pace.low),
        }
