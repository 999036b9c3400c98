"""Learning-rate schedules, weight averaging (NT-ASGD), early stopping and random BPTT lengths.

Everything here that changes during a run has a ``state_dict`` that goes into
``<stem>.last.pt``, so a resumed run continues with the same rates and averages.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.stored_checks import check_int, check_mapping, check_number, check_sequence, check_tensor

MIN_RANDOM_BPTT = 5
"""Shortest random BPTT segment (Merity et al., 2018, ``awd-lstm-lm``)."""


class LrSchedule:
    """The learning rate of each step and what a validation result does to it.

    Warm-up is linear from 0: step ``s`` (0-based) of ``warmup_steps`` uses
    ``lr * (s + 1) / warmup_steps``, so no step is wasted at rate 0. After it:
    constant keeps ``lr``; plateau divides the current rate by ``lr_decay`` after each
    validation that does not improve on the best; cosine falls from ``lr`` to ``min_lr``
    over the steps left after warm-up, reaching ``min_lr`` at ``total_steps`` or when the
    time budget is spent, whichever comes first. The time budget counts because a step's
    cost varies up to several times between machines: annealing by steps alone would stop
    a slow machine's run mid-schedule, at a high rate, and a fast one's would idle at
    ``min_lr``.
    """

    def __init__(self, config: TrainConfig, total_steps: int) -> None:
        self.config = config
        self.total_steps = max(total_steps, 1)
        self.level = config.lr
        """The plateau schedule's current rate."""
        self.stalled = 0
        """Validations in a row without improvement on the best."""

    def lr(self, step: int, time_spent: float = 0.0) -> float:
        """The rate for the step that follows ``step`` steps already taken, when
        ``time_spent`` of the time budget (a share, 0 without one) is used."""
        config = self.config
        if step < config.warmup_steps:
            return config.lr * (step + 1) / config.warmup_steps
        if config.schedule == "cosine":
            span = max(self.total_steps - config.warmup_steps, 1)
            done = min(max((step - config.warmup_steps) / span, time_spent), 1.0)
            return config.min_lr + (config.lr - config.min_lr) * (1 + math.cos(math.pi * done)) / 2
        return self.level

    def after_validation(self, improved: bool) -> str | None:
        """Record a validation; the reason to stop the run now, if any."""
        config = self.config
        self.stalled = 0 if improved else self.stalled + 1
        if config.schedule == "plateau" and not improved:
            self.level /= config.lr_decay
            if config.min_lr > 0 and self.level < config.min_lr:
                return "min_lr"
        if config.patience and self.stalled >= config.patience:
            return "patience"
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"level": self.level, "stalled": self.stalled}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state(state)
        self.level, self.stalled = float(state["level"]), int(state["stalled"])

    @staticmethod
    def check_state(state: Any) -> None:
        """Refuse (DamagedState, exit 65) anything :meth:`state_dict` could not have made."""
        check_mapping("schedule", state, ("level", "stalled"))
        check_number("schedule.level", state["level"], 0.0, 1e6)
        check_int("schedule.stalled", state["stalled"])


class WeightAverage:
    """The running mean of the weights after each step since averaging started (NT-ASGD).

    Merity et al. (2018) switch SGD to averaged SGD once validation has not improved on
    the best for ``nonmono`` checks; validation and the saved model then use the mean of
    the iterates, ``mean_k w_k`` over the steps taken since the switch.
    """

    def __init__(self, model: torch.nn.Module, nonmono: int) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.nonmono = nonmono
        self.mean: list[torch.Tensor] | None = None
        self.count = 0

    @property
    def active(self) -> bool:
        return self.mean is not None

    def after_validation(self, stalled: int) -> bool:
        """Start averaging when ``stalled`` reaches ``nonmono``; True when it starts now."""
        if self.active or stalled < self.nonmono:
            return False
        self.mean = [torch.zeros_like(p, dtype=torch.float32) for p in self.params]
        self.count = 0
        return True

    @torch.no_grad()
    def update(self) -> None:
        if self.mean is None:
            return
        self.count += 1
        for mean, param in zip(self.mean, self.params):
            mean.add_(param.detach().float() - mean, alpha=1.0 / self.count)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the live weights and the average (call twice to undo)."""
        if self.mean is None or self.count == 0:
            return
        for mean, param in zip(self.mean, self.params):
            live = param.detach().clone()
            param.copy_(mean)
            mean.copy_(live)

    def state_dict(self) -> dict[str, Any] | None:
        if self.mean is None:
            return None
        return {"count": self.count, "mean": [m.detach().cpu() for m in self.mean]}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is None:
            self.mean, self.count = None, 0
            return
        self.check_state(state, self.params)
        self.count = int(state["count"])
        self.mean = [m.to(p.device) for m, p in zip(state["mean"], self.params)]

    @staticmethod
    def check_state(state: Any, params: list[torch.Tensor]) -> None:
        """Refuse (DamagedState, exit 65) an average that is not one float32 mean per parameter."""
        check_mapping("average", state, ("count", "mean"))
        check_int("average.count", state["count"])
        means = check_sequence("average.mean", state["mean"], len(params))
        for index, (mean, param) in enumerate(zip(means, params)):
            check_tensor(f"average.mean.{index}", mean, torch.float32, param.shape)


def random_bptt_length(bptt: int) -> int:
    """A segment length: ``bptt`` (p = 0.95) or ``bptt / 2``, then N(that, 5), at least 5.

    Drawn from numpy's global generator, which ``--resume`` restores.
    """
    centre = bptt if np.random.random() < 0.95 else bptt / 2
    return max(MIN_RANDOM_BPTT, int(np.random.normal(centre, 5)))
