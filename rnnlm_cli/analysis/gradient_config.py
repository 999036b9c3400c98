"""What ``rnnlm analyze gradients`` measures and on how much text: importable without torch,
so the command line can show its defaults without loading it."""

from __future__ import annotations

from dataclasses import dataclass

from rnnlm_cli.config import check_seed, check_values
from rnnlm_cli.errors import UsageError

MAX_DISTANCE = 10_000
"""Largest --max-distance and --warmup."""
MAX_POSITIONS = 100_000
"""Largest --positions and --batch."""

REACH_FALL = 1e3
"""The gradient "reaches" as far as its median norm stays within this factor of distance 1."""


@dataclass(frozen=True)
class GradientConfig:
    """What :func:`gradient_profile` measures, and on how much of the text."""

    max_distance: int = 100
    """K: the largest distance k measured."""
    positions: int = 256
    """Positions t sampled from the text (fewer when the text has fewer windows)."""
    warmup: int = 50
    """Tokens read before each window, without gradient, so the state at t - K is a typical one."""
    batch: int = 32
    """Windows run together: memory grows with batch x (K + 1) steps of the graph."""
    seed: int = 0
    """Seed of the position sampling: the same seed picks the same positions."""

    def __post_init__(self) -> None:
        check_values(self)
        check_seed(self.seed)
        # Upper bounds keep memory bounded: the graph holds batch x (K + 1) steps, and the
        # sample positions x (warm-up + K) token ids.
        for name, value, low, high in (("--max-distance", self.max_distance, 1, MAX_DISTANCE),
                                       ("--positions", self.positions, 1, MAX_POSITIONS),
                                       ("--warmup", self.warmup, 0, MAX_DISTANCE),
                                       ("--batch", self.batch, 1, MAX_POSITIONS)):
            if not low <= value <= high:
                raise UsageError(f"{name} must be between {low} and {high:,}, got {value}")

    @property
    def window(self) -> int:
        """Tokens per window: warm-up, the K + 1 steps t-K..t, and the target."""
        return self.warmup + self.max_distance + 2
