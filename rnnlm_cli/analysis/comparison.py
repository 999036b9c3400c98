"""What a comparison is: the variants, inputs and budget (:class:`Comparison`), each run it
plans (:class:`Run`: a variant with one seed, in its own folder) and the figures measured on
one (:class:`RunResult`). Shared by the orchestration (:mod:`rnnlm_cli.analysis.compare`) and
the records each run's folder keeps (:mod:`rnnlm_cli.analysis.compare_records`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from rnnlm_cli.analysis.variants import Variant
from rnnlm_cli.config import check_seed, check_values
from rnnlm_cli.errors import UsageError

MAX_REPEAT = 1000
"""Largest --repeat: seeds per variant."""


@dataclass(frozen=True)
class Comparison:
    """What to train and how to measure it."""

    corpus: str
    valid: str
    out: str
    budget: float
    """Seconds of training per run (``--max-time``)."""
    variants: tuple[Variant, ...]
    shared: dict[str, Any] = field(default_factory=dict)
    """Train options every run gets (a --config file's, the variants file's ``base``)."""
    preset: str | None = None
    repeat: int = 1
    """Runs per variant, with seeds seed, seed + 1, ..."""
    seed: int = 1234
    test: str | None = None
    pairs: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        check_values(self)
        if not self.budget > 0 or not math.isfinite(self.budget):
            raise UsageError(f"--budget must be a positive number of seconds, got {self.budget}")
        if not 1 <= self.repeat <= MAX_REPEAT:
            raise UsageError(f"--repeat must be between 1 and {MAX_REPEAT}, got {self.repeat}")
        check_seed(self.seed)
        check_seed(self.seed + self.repeat - 1, "--seed plus --repeat")
        if not self.out.strip():
            raise UsageError("--out: the path is empty; give the folder that keeps the runs, e.g. runs/compare")
        if not self.variants:
            raise UsageError("nothing to compare: give --vary KEY=V1,V2 or --variants FILE")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise UsageError(f"variant names repeat: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")


@dataclass(frozen=True)
class Run:
    """One training run: a variant with one seed, in its own folder."""

    variant: Variant
    seed: int
    folder: str

    @property
    def model(self) -> str:
        return os.path.join(self.folder, "model.pt")

    def file(self, name: str) -> str:
        return os.path.join(self.folder, name)


@dataclass
class RunResult:
    """The measured figures of one run."""

    variant: str
    seed: int
    folder: str
    valid_ppl: float
    """Best validation perplexity, as training kept the model."""
    test_ppl: float | None
    params: int
    tokens_per_s: float
    steps: int
    train_seconds: float
    reach: int | None
    """Gradient reach on the validation text (None: beyond --max-distance)."""
    pair_accuracy: float | None
    pair_accuracy_by_distance: dict[str, float] | None = None
    measured_on: dict[str, Any] | None = None
    """What the figures depend on beyond training (:func:`measure_spec`): a result measured on
    other inputs is measured again."""


def plan_runs(comparison: Comparison) -> list[Run]:
    runs = []
    for variant in comparison.variants:
        for index in range(comparison.repeat):
            seed = int(variant.options.get("seed", comparison.shared.get("seed", comparison.seed))) + index
            folder = os.path.join(comparison.out, variant.name)
            if comparison.repeat > 1:
                folder = os.path.join(folder, f"seed{seed}")
            runs.append(Run(variant, seed, folder))
    return runs
