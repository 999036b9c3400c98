"""The total gradient norm over a run, and where ``--clip`` sits among its values.

Clipping (Pascanu et al., 2013) is meant for the rare step whose gradient explodes: when the
total norm before clipping exceeds ``--clip``, ``clip_grad_norm_`` scales the gradient down to
that length. A clip below the typical norm scales nearly every step to the same length, so
the clip, not the gradient, sets the size of each step; a clip above every norm does
nothing. The figures here tell these cases apart:

- per log interval (:func:`interval_figures`): the norm's mean, percentiles and largest
  value over the interval's steps and, with a clip, the share of those steps it clipped;
- over the run (:class:`NormTally`, saved in the training state so that a resumed run
  continues it): the share of steps clipped, the median and largest norm, and a one-line
  verdict on the clip (:meth:`NormTally.diagnosis`).

A step counts as clipped when its norm is strictly above the clip. Steps skipped for a
non-finite loss or gradient count nowhere: they change no weights. Under torchrun every rank
clips the same all-reduced gradient, so rank 0's figures, the ones reported, are the run's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnlm_cli.stored_checks import DamagedState, check_int, check_mapping, check_number, check_sequence

PERCENTILES = (10, 50, 90)
"""The percentiles of an interval's norms that are logged (``grad_norm_p10`` ...), linearly
interpolated between steps (numpy's default): the spread of the usual steps, while
``grad_norm_max`` shows the spikes."""

MOSTLY_CLIPPED = 0.5
"""Above this share of clipped steps the clip lies below the median norm: most steps are
scaled to the same length, and --clip sets the step's length rather than guarding against
spikes (which AWD-LSTM's SGD recipe does on purpose, hence a note, not a warning)."""

BINS_PER_DECADE = 10
"""The run's norms are counted in bins a factor 10**0.1 wide, so the median read from them
is within 12% (10**0.05) of the true one, in a state of fixed size however long the run."""
LOWEST_DECADE, HIGHEST_DECADE = -6, 6
"""The binned range, 1e-6 to 1e6; a bin below and one above it take the rest."""
BINS = (HIGHEST_DECADE - LOWEST_DECADE) * BINS_PER_DECADE + 2


def interval_figures(norms: np.ndarray, clip: float) -> dict[str, float]:
    """The figures of one log interval's norms (one per step): ``grad_norm`` (the mean),
    ``grad_norm_p10``/``_p50``/``_p90``, ``grad_norm_max`` and, when ``clip`` > 0,
    ``clipped_share``: the share of the steps whose norm exceeded it. All 0 for no steps."""
    norms = np.asarray(norms, dtype=np.float64)
    empty = len(norms) == 0
    figures = {"grad_norm": 0.0 if empty else float(norms.mean())}
    for rank, value in zip(PERCENTILES, [0.0] * len(PERCENTILES) if empty else np.percentile(norms, PERCENTILES)):
        figures[f"grad_norm_p{rank}"] = float(value)
    figures["grad_norm_max"] = 0.0 if empty else float(norms.max())
    if clip > 0:
        figures["clipped_share"] = 0.0 if empty else float((norms > clip).mean())
    return figures


def _bin_of(norms: np.ndarray) -> np.ndarray:
    """Each norm's bin: 0 below 1e-6 (zero included), BINS - 1 from 1e6 up."""
    with np.errstate(divide="ignore"):
        scaled = np.floor(np.log10(norms) * BINS_PER_DECADE)  # -inf for a zero norm
    low = LOWEST_DECADE * BINS_PER_DECADE
    return (np.clip(scaled, low - 1, HIGHEST_DECADE * BINS_PER_DECADE) - (low - 1)).astype(np.int64)


def percent(share: float) -> str:
    """A share as a whole percentage, "37%"."""
    # A share that rounds to 0% or 100% but is neither must not read as "never" or "always".
    if 0 < share < 0.01:
        return "<1%"
    if 0.99 < share < 1:
        return ">99%"
    return f"{share:.0%}"


@dataclass
class NormTally:
    """The gradient norms of a run's steps, counted: saved as ``progress.grad_norms``.

    A run begun by an rnnlm that did not count them starts counting when it is resumed. A
    resume with another ``--clip`` starts the clip's counts afresh: the share speaks for the
    clip in force. The median and largest norm cover every step counted.
    """

    clip: float = 0.0
    """The --clip that ``clip_steps`` and ``clipped`` were counted under."""
    clip_steps: int = 0
    """Steps counted under that clip."""
    clipped: int = 0
    """Of those, the steps whose norm exceeded the clip (none when it is 0)."""
    largest: float = 0.0
    """The largest norm of any step counted."""
    bins: list[int] = field(default_factory=lambda: [0] * BINS)
    """Steps per norm bin (:data:`BINS_PER_DECADE`, over all steps counted)."""

    def add(self, norms: np.ndarray, clip: float) -> None:
        """Count the norms (one per step) of steps taken under ``clip``."""
        norms = np.asarray(norms, dtype=np.float64)
        if clip != self.clip:
            self.clip, self.clip_steps, self.clipped = clip, 0, 0
        if len(norms) == 0:
            return
        self.clip_steps += len(norms)
        if clip > 0:
            self.clipped += int((norms > clip).sum())
        self.largest = max(self.largest, float(norms.max()))
        self.bins = (np.asarray(self.bins, dtype=np.int64) + np.bincount(_bin_of(norms), minlength=BINS)).tolist()

    @property
    def steps(self) -> int:
        """Steps counted, under any clip."""
        return sum(self.bins)

    def clipped_share(self) -> float | None:
        """The share of the steps under the current clip that it clipped; None without a clip or steps."""
        return self.clipped / self.clip_steps if self.clip > 0 and self.clip_steps else None

    def median(self) -> float | None:
        """The median norm to within 12% (the middle of its bin, by geometric mean); None before any step."""
        total = self.steps
        if not total:
            return None
        index = int(np.searchsorted(np.cumsum(self.bins), (total + 1) // 2))
        if index == 0:
            return 10.0 ** LOWEST_DECADE
        if index == BINS - 1:
            return 10.0 ** HIGHEST_DECADE
        return 10.0 ** (LOWEST_DECADE + (index - 0.5) / BINS_PER_DECADE)

    def diagnosis(self) -> str | None:
        """One line on the clip: it clipped most steps, none, or how many; None without a clip or steps."""
        share = self.clipped_share()
        if share is None:
            return None
        clip, steps = f"--clip {self.clip:g}", f"{self.clip_steps:,} step{'s' if self.clip_steps != 1 else ''}"
        if share > MOSTLY_CLIPPED:
            return (f"{clip} clipped {percent(share)} of {steps}: the clip is below the typical gradient norm "
                    f"(median about {self.median():.3g}): it sets the length of most steps rather than guarding "
                    "against spikes; raise it unless that is meant")
        if share == 0:
            return f"{clip} never fired in {steps} (largest norm {self.largest:.3g}): it has no effect here"
        return (f"{clip} clipped {percent(share)} of {steps} "
                f"(median norm about {self.median():.3g}, largest {self.largest:.3g})")

    def to_dict(self) -> dict[str, Any]:
        return {"clip": self.clip, "clip_steps": self.clip_steps, "clipped": self.clipped,
                "largest": self.largest, "bins": list(self.bins)}

    @classmethod
    def from_dict(cls, data: Any, name: str = "progress.grad_norms") -> "NormTally":
        """The saved tally, every field checked (DamagedState, exit 65, for any other)."""
        check_mapping(name, data, tuple(cls.__dataclass_fields__))
        clip = check_number(f"{name}.clip", data["clip"])
        clip_steps = check_int(f"{name}.clip_steps", data["clip_steps"])
        clipped = check_int(f"{name}.clipped", data["clipped"], 0, clip_steps)
        largest = check_number(f"{name}.largest", data["largest"])
        bins = [check_int(f"{name}.bins.{i}", count)
                for i, count in enumerate(check_sequence(f"{name}.bins", data["bins"], BINS))]
        if clip_steps > sum(bins):
            raise DamagedState(f"{name}.clip_steps", f"is {clip_steps}, more than the {sum(bins)} steps counted")
        if largest > 0 and not sum(bins):
            raise DamagedState(f"{name}.largest", f"is {largest}, but no step was counted")
        return cls(clip=clip, clip_steps=clip_steps, clipped=clipped, largest=largest, bins=bins)

    def result_fields(self) -> dict[str, Any]:
        """The run's figures as :class:`~rnnlm_cli.train.result.TrainResult` reports them."""
        median = self.median()
        return {"clipped_share": self.clipped_share(), "clip_steps": self.clip_steps, "clipped_steps": self.clipped,
                "grad_norm_median": median, "grad_norm_max": self.largest if self.steps else None,
                "clip_diagnosis": self.diagnosis()}
