"""What a training run gives back to its caller: progress callbacks while it runs, a result at the end."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from rnnlm_cli.text.backward import LEFT_TO_RIGHT
from rnnlm_cli.train.outputs import OutputPaths
from rnnlm_cli.units import perplexity


@dataclass
class TrainResult:
    best_valid_loss: float
    best_valid_ppl: float
    steps: int
    epochs: float
    train_tokens: int
    seconds: float
    tokens_per_second: float
    skipped_steps: int
    stop_reason: str
    paths: OutputPaths
    rank: int = 0
    """The process' rank under torchrun; only rank 0 reports."""
    promoted: bool | None = None
    """With --promote-if-better: whether the new model replaced the target."""
    promotion: str | None = None
    clipped_share: float | None = None
    """With --clip: the share of ``clip_steps`` whose gradient norm exceeded it (clipping fired)."""
    clip_steps: int = 0
    """The steps the share covers: the whole run's under this --clip (see :class:`~rnnlm_cli.train.grad_norms.NormTally`)."""
    clipped_steps: int = 0
    """Of ``clip_steps``, those clipped."""
    grad_norm_median: float | None = None
    """The median total gradient norm before clipping over the run's steps, to within 12%; None before a step."""
    grad_norm_max: float | None = None
    """The largest total gradient norm before clipping over the run's steps; None before a step."""
    clip_diagnosis: str | None = None
    """With --clip: one line on whether it clipped most steps, none, or some."""
    vocabulary: dict[str, Any] | None = None
    """The out-of-vocabulary figures of the corpus and validation text (``train``, ``valid``:
    words, oov, oov_rate, oov_types) and, with --grow-vocab, ``growth``; see
    :mod:`~rnnlm_cli.train.vocabulary`."""
    overfitting: dict[str, Any] | None = None
    """Where the run began to memorise its corpus, its figures and the line that said so
    (see :mod:`~rnnlm_cli.train.overfitting`); None when it was not seen."""
    direction: str = LEFT_TO_RIGHT
    """How the model reads each line: "left to right", or "right to left" for a backward
    model (``--reverse``, :mod:`rnnlm_cli.text.backward`)."""

    @classmethod
    def of_run(cls, progress: Any, epoch_done: float, stop_reason: str, paths: OutputPaths, rank: int) -> "TrainResult":
        """The result of a run that stopped at ``progress`` (a :class:`~rnnlm_cli.train.state.RunPosition`)
        with ``epoch_done`` of its current epoch trained."""
        seconds = progress.train_seconds
        return cls(best_valid_loss=progress.best_valid_loss, best_valid_ppl=perplexity(progress.best_valid_loss),
                   steps=progress.step, epochs=progress.epoch - 1 + epoch_done, train_tokens=progress.train_tokens,
                   seconds=seconds, tokens_per_second=progress.train_tokens / max(seconds, 1e-9),
                   skipped_steps=progress.skipped_steps, stop_reason=stop_reason, paths=paths, rank=rank,
                   **progress.grad_norms.result_fields(), overfitting=progress.overfit_watch.seen)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "paths": asdict(self.paths)}


def no_validation_line(steps: int, skipped: int, stop_reason: str, paths: OutputPaths) -> str:
    """The error of an invocation that took ``steps`` steps (and skipped ``skipped``) but has
    no finite validation to show for them."""
    if steps:
        what = f"validation loss was never finite in this run ({steps:,} steps trained)"
    else:
        what = (f"all {skipped:,} steps tried had a non-finite loss or gradient until {stop_reason} ended the run, "
                "so nothing was validated")
    return (f"training diverged: {what}; {paths.model} is not replaced, the state is saved "
            f"(--resume {paths.last} continues); try a lower --lr or a --clip value")


class TrainCallbacks(Protocol):
    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_progress(self, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> None: ...
    def on_log(self, record: dict[str, Any]) -> None: ...
    def on_validate(self, record: dict[str, Any]) -> None: ...
    def on_estimate(self, estimate: dict[str, Any]) -> None:
        """After the first steps (``first``), and again when the estimate moves: seconds per
        step and per epoch, the planned and remaining steps, their seconds, what is left of
        --max-time (None: no limit) and where the clock stops the run; a range (``*_low``,
        ``*_high``) where ``range`` says the pace is uncertain (see :meth:`RunBudget.estimate`)."""
    def on_validation_progress(self, done: int, total: int) -> None:
        """Validation has scored ``done`` of about ``total`` tokens."""
    def on_wall_budget(self, budget: dict[str, Any]) -> None:
        """With --max-wall-time, before training: the seconds left, those kept for the
        validations and saves after training, the training seconds that leaves and the
        step's seconds the probe timed (see :class:`~rnnlm_cli.train.wall_budget.WallBudget`)."""
    def on_overfitting(self, record: dict[str, Any]) -> None:
        """Once, at the validation where training kept improving and validation did not;
        ``record["message"]`` says so."""


class SilentCallbacks:
    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_progress(self, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> None:
        pass

    def on_log(self, record: dict[str, Any]) -> None:
        pass

    def on_validate(self, record: dict[str, Any]) -> None:
        pass

    def on_estimate(self, estimate: dict[str, Any]) -> None:
        pass

    def on_validation_progress(self, done: int, total: int) -> None:
        pass

    def on_wall_budget(self, budget: dict[str, Any]) -> None:
        pass

    def on_overfitting(self, record: dict[str, Any]) -> None:
        pass
