"""Regularisation fitted to the epochs a run will see.

How much a model should be held back depends on how often it sees each token. In one pass
nothing is memorised and every dropped unit is lost signal; by the tenth pass a 1x256 LSTM
on a million words has learnt its training text (training perplexity half the validation
one) unless dropout stops it. So the options nobody set (no flag, ``--config`` or preset)
are chosen from the epochs the run plans: its steps, or, when a clock ends it, the steps
its time buys at the speed measured on this machine (:mod:`.speed_probe`).

The table :data:`DROPOUT_BY_EPOCHS` was measured on a 1M-word, 10k-vocabulary corpus with
the CPU recipe's 1x256 LSTM (``bench/regularization_grid.py``; figures in the README).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

from rnnlm_cli.train.job import TrainJob

FITTED_REGULARIZATION = ("dropout",)
"""The model options a run chooses for its epochs when nobody set them."""

DROPOUT_BY_EPOCHS = ((3.0, 0.0), (9.0, 0.3), (18.0, 0.5))
"""(epochs, dropout) measured best for a run of that many epochs; between two entries the rate
is interpolated linearly, before the first and after the last it is theirs."""
WIDER_FROM_EPOCHS = 20.0
"""Epochs from which a clock is better spent on a model twice as wide: a 1x256 LSTM on a 1M-word
corpus gains 1% from its 9th to its 18th epoch (test ppl 82.0, 81.0), while a 1x512 one gives
77.8 in 9 epochs, the time 256 takes for about 20."""
WIDER_AT_LEAST = 8.0
"""Epochs the wider model must still see for the trade to hold."""


@dataclass(frozen=True)
class Regularization:
    dropout: float


def regularization_for(epochs: float) -> Regularization:
    """The rates for a run of ``epochs`` passes over its training tokens."""
    points = DROPOUT_BY_EPOCHS
    if epochs <= points[0][0]:
        return Regularization(dropout=points[0][1])
    for (low, low_rate), (high, high_rate) in zip(points, points[1:]):
        if epochs <= high:
            share = (epochs - low) / (high - low)
            return Regularization(dropout=round(low_rate + share * (high_rate - low_rate), 2))
    return Regularization(dropout=points[-1][1])


def planned_epochs(job: TrainJob, steps_per_epoch: int, seconds_per_step: float | None,
                   seconds: float | None) -> tuple[float, str]:
    """The epochs the run will train and how that is known: its planned steps, or fewer when
    ``seconds`` of training at ``seconds_per_step`` end it first."""
    train = job.train
    steps = train.max_steps or train.epochs * steps_per_epoch
    how = f"{steps:,} steps planned"
    if seconds is not None and seconds_per_step:
        timed = seconds / seconds_per_step
        if timed < steps:
            steps = timed
            how = f"{_seconds(seconds)} of training at {seconds_per_step:.3g} s a step, timed here"
    return steps / max(steps_per_epoch, 1), how


def unset_regularization(job: TrainJob) -> tuple[str, ...]:
    """The fitted options nobody set; () for a job built in code (every value as given)."""
    if job.origins is None:
        return ()
    return tuple(name for name in FITTED_REGULARIZATION if name not in job.origins)


def fit_regularization(job: TrainJob, epochs: float, how: str, notes: list[str]) -> TrainJob:
    """``job`` with the regularisation nobody set chosen for ``epochs`` (known from ``how``),
    and one line in ``notes`` that says what was chosen and why."""
    unset = unset_regularization(job)
    if not unset:
        return job
    chosen = regularization_for(epochs)
    values = {name: getattr(chosen, name) for name in unset}
    model = dataclasses.replace(job.model, **values)
    said = ", ".join(f"--{name.replace('_', '-')} {value:g}" for name, value in values.items())
    level = ("low: a few passes memorise little" if epochs <= DROPOUT_BY_EPOCHS[0][0]
             else "more passes over the same text, more regularisation")
    notes.append(f"regularisation: {said} for about {epochs:.1f} epochs ({how}); {level} "
                 "(give the flags to choose yourself)")
    return dataclasses.replace(job, model=model)


def fit_to_budget(job: TrainJob, train_tokens: int, seconds: float | None,
                  time_a_step: Callable[[TrainJob], float], notes: list[str], may_widen: bool = False) -> TrainJob:
    """``job`` with the regularisation nobody set fitted to the epochs it plans over
    ``train_tokens`` (this process' share), or to those ``seconds`` of training buy when a clock
    bounds it, at the seconds a step of a job's model ``time_a_step(job)`` measures (called only
    then). With ``may_widen`` and a width nobody set, a clock long enough for
    :data:`WIDER_FROM_EPOCHS` epochs trains a model twice as wide instead, when that still sees
    :data:`WIDER_AT_LEAST`."""
    if not unset_regularization(job):
        return job
    train = job.train
    steps_per_epoch = math.ceil(max((train_tokens - 1) // train.batch_size, 1) / train.bptt)
    clock = None if seconds is None else max(seconds, 0.0)
    epochs, how = planned_epochs(job, steps_per_epoch, time_a_step(job) if clock is not None else None, clock)
    if may_widen and clock is not None and epochs >= WIDER_FROM_EPOCHS and "hidden" not in (job.origins or {}):
        wide = dataclasses.replace(job, model=dataclasses.replace(job.model, hidden=2 * job.model.hidden))
        wide_epochs, wide_how = planned_epochs(wide, steps_per_epoch, time_a_step(wide), clock)
        if wide_epochs >= WIDER_AT_LEAST:
            notes.append(f"width: --hidden {wide.model.hidden}, twice {job.model.hidden}: {epochs:.0f} epochs of the "
                         f"narrower model would mostly memorise; {wide_epochs:.1f} of this one learn more "
                         "(--hidden to choose yourself)")
            # A wider model memorises sooner: it gets the rate of a narrow one seeing twice the epochs.
            return fit_regularization(wide, 2 * wide_epochs, f"{wide_how}; rated as {2 * wide_epochs:.0f} epochs "
                                      "of the narrower model", notes)
    return fit_regularization(job, epochs, how, notes)


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
