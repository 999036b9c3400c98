"""The truncated-BPTT training loop.

The corpus is cut into ``batch_size`` parallel streams (see ``batching.bptt_streams``);
each step trains on the next ``bptt`` tokens of every stream, starting from the hidden
state the previous segment ended in, detached so gradients stop at the segment start
(Williams & Peng, 1990). The loop reports through a callbacks object and never prints.

Every validation writes ``<stem>.last.pt`` (weights, optimizer, position, hidden state,
random generators, schedule and weight average: everything ``--resume`` needs) and,
when the score improves, the model users load. A step whose loss or gradient is not
finite is skipped, not applied. Rates, averaging and early stopping live in
``schedules.py``; the loss terms in ``objective.py``; writing the files in ``run_files.py``,
and the layout of ``<stem>.last.pt``'s training state in ``state.py``
(:class:`~rnnlm_cli.train.state.TrainState`).
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from typing import Any, Callable

import numpy as np
import torch

from rnnlm_cli.text.batching import bptt_streams, iter_bptt, segment_count
from rnnlm_cli.train.budget import RunBudget
from rnnlm_cli.train.objective import Objective
from rnnlm_cli.train.schedules import LrSchedule, WeightAverage, random_bptt_length
from rnnlm_cli.config import TrainConfig, as_dict
from rnnlm_cli.device import amp_enabled, bf16_autocast, synchronize
from rnnlm_cli.train.distributed import SINGLE, Dist, max_all, sum_all
from rnnlm_cli.errors import RnnlmError, TrainingInterrupted
from rnnlm_cli.train.validation import stream_loss_sum
from rnnlm_cli.models.lm import detach_state
from rnnlm_cli.train.optimizers import load_optimizer_state, make_optimizer
from rnnlm_cli.text.tokenview import TokenFileChangedError
from rnnlm_cli.train.outputs import LogWindow, MetricsLog, OutputPaths
from rnnlm_cli.train.run_files import RunFiles
from rnnlm_cli.train.overfitting import levers
from rnnlm_cli.train.state import RunPosition, TrainState, capture_rng, restore_rng
from rnnlm_cli.train.result import SilentCallbacks, TrainCallbacks, TrainResult, no_validation_line  # noqa: F401 (re-exported)
from rnnlm_cli.train.wall_budget import WallBudget, fewest_steps, fit_wall_clock
from rnnlm_cli.units import perplexity


class TrainingDiverged(RnnlmError):
    """Training produced nothing finite to keep, or kept producing non-finite steps."""


class NoStop:
    requested: int | None = None


class Trainer:
    """One training run; :meth:`run` trains until a budget ends, a signal, or divergence."""

    def __init__(self, model: torch.nn.Module, train_tokens: np.ndarray, valid_tokens: np.ndarray,
                 tokenizer_dict: dict[str, Any], config: TrainConfig, device: torch.device,
                 paths: OutputPaths, callbacks: TrainCallbacks | None = None,
                 resume: TrainState | None = None, stop=None, provenance: dict[str, Any] | None = None,
                 dist: Dist = SINGLE, synonym_pairs: torch.Tensor | None = None,
                 wall_deadline: float | None = None, validations_after: int = 1,
                 unk_stand_in: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None):
        self.dist = dist
        self.unk_stand_in = unk_stand_in
        """Reads some rare words as ``<unk>`` in each segment (:mod:`~rnnlm_cli.train.unk_stand_in`), or None."""
        self.model = model.to(device)
        self.forward = self.model
        """What a step runs: the model, or under torchrun its DDP wrapper (made in :meth:`run`)."""
        self.valid_tokens = valid_tokens
        self.train_length = len(train_tokens)
        self.config = config
        self.device = device
        self.paths = paths
        self.callbacks = (callbacks or SilentCallbacks()) if dist.is_main else SilentCallbacks()
        self.stop = stop or NoStop()
        self.train_config = {**as_dict(config), "provenance": provenance or {}}
        self.files = RunFiles(paths, tokenizer_dict, self.train_config, dist)
        self.optimizer = make_optimizer(model, config)
        self.streams = bptt_streams(train_tokens, config.batch_size)  # (B, L + 1), a view of the file
        self.steps_per_epoch = segment_count(self.streams, config.bptt)  # with --random-bptt, about
        self.objective = Objective(config, None if synonym_pairs is None else synonym_pairs.to(device))
        self.schedule = LrSchedule(config, config.max_steps or config.epochs * self.steps_per_epoch)
        self.average = WeightAverage(self.model, config.nonmono) if config.asgd else None
        self.amp = amp_enabled(config.amp, device)
        self.progress = RunPosition()
        self.hidden: tuple[torch.Tensor, ...] | None = None
        self.bad_in_a_row = 0
        self._agreed = [False, False]  # (a signal arrived, the time budget is spent), on any rank
        self.budget = RunBudget(config, self.steps_per_epoch)
        self.wall_deadline, self.validations_after = wall_deadline, validations_after
        """With --max-wall-time: when the command must end (``time.monotonic``), and the
        validations that must still fit after training (the final one, and promotion's)."""
        self._trained = torch.zeros(2, dtype=torch.float64, device=device)
        """Training cross-entropy summed over the tokens since the last validation, and those
        tokens: the training side of the overfitting watch (kept on the device, read at validation)."""
        self._time_spent = 0.0
        """Share of --max-time the run has used (earlier invocations' training included), as
        the ranks agreed after the last step; the cosine schedule anneals over it."""
        if resume is not None:
            self._continue(resume)
        self.metrics = MetricsLog(paths.metrics if dist.is_main else None, append=resume is not None)

    def _continue(self, resume: TrainState) -> None:
        """Take up a saved run where it stopped: its position, optimizer, schedule, average,
        random generators and (this rank's) hidden state."""
        mine = resume.ranks[self.dist.rank]
        self.progress = resume.progress
        load_optimizer_state(self.optimizer, resume.optimizer)  # keeps this machine's kernel choice
        if resume.schedule is not None:
            self.schedule.load_state_dict(resume.schedule)
        if self.average is not None:
            self.average.load_state_dict(resume.average)
        restore_rng(mine.rng)
        if mine.hidden is not None:
            self.hidden = tuple(t.to(self.device) for t in mine.hidden)

    # -- the loop -------------------------------------------------------------------
    def run(self) -> TrainResult:
        progress = self.progress
        # Before a line is shown or a file opened: a wall clock too short to train refuses the run (exit 4).
        wall = self._fit_the_wall_clock() if self.wall_deadline is not None else None
        if self.dist.enabled:
            # Made only once the run will train: a process group torn down while a fresh DDP
            # still lives (a refused run's traceback holds it) can deadlock gloo's teardown.
            from torch.nn.parallel import DistributedDataParallel

            device = self.device
            self.forward = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.callbacks.on_start({
            "device": str(self.device), "train_tokens": self.train_length,
            "valid_tokens": int(len(self.valid_tokens)), "steps_per_epoch": self.steps_per_epoch,
            "planned_steps": self.budget.planned_steps, "max_time": self.config.max_time or None,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "resumed_at": progress.to_dict() if progress.step else None,
        })
        if wall is not None:
            self.callbacks.on_wall_budget(wall.to_dict())
        self.budget.start(progress.step, progress.train_seconds)  # a resumed run continues its schedule
        self._time_spent = self.budget.share_spent(0.0)
        # What this invocation started from, and its finite validations: exit 0 needs one.
        self._at_start, self._finite_validations = (progress.step, progress.skipped_steps), 0
        try:
            with self._saved_if_the_data_goes():
                stop_reason = self._loop(progress.step)
        finally:
            self.metrics.close()
        return self._result(stop_reason)

    @contextlib.contextmanager
    def _saved_if_the_data_goes(self):
        """A token file truncated or rewritten under the run (exit 66) still leaves a resumable state.

        The failed read comes before a step, so the weights, position and carried state are
        those of the last step taken. Under torchrun the other ranks are still in the step's
        collectives, so there is nothing this rank can save alone.
        """
        try:
            yield
        except TokenFileChangedError:
            if not self.dist.enabled:
                self._save_last()
            raise

    def _loop(self, steps_at_start: int) -> str:
        config, progress = self.config, self.progress
        stop_reason = "epochs"
        while progress.epoch <= config.epochs:
            stop_reason = self._budget_spent() or self._train_epoch()
            if stop_reason == "signal":
                self._save_last()
                signum = self.stop.requested or 15  # a rank the signal did not reach stops too
                raise TrainingInterrupted(
                    f"stopped by {signal.Signals(signum).name} at step {progress.step}, state saved; "
                    f"resume with --resume {self.paths.last}", signum)
            if stop_reason is None:  # the epoch ran to its end
                stop_reason = "epochs"
                halt = self._validate()
                progress.epoch += 1
                progress.segment = progress.position = 0
                self.hidden = None
                self._save_last()
                if halt:
                    stop_reason = halt
                    break
                continue
            # A budget stopped this invocation's training, or found it already spent (a resumed
            # run stopped by a signal since its last validation): the weights are validated and kept.
            if progress.step > steps_at_start or self._unvalidated():
                self._validate()
                if progress.position >= self.streams.shape[1] - 1:
                    # The epoch's data is used up and now validated: a resume starts the next one.
                    progress.epoch += 1
                    progress.segment = progress.position = 0
                    self.hidden = None
                self._save_last()
            elif progress.skipped_steps > self._at_start[1]:
                self._save_last()  # every step was skipped: the weights are as they were, the position is not
            break
        return stop_reason

    def _fit_the_wall_clock(self) -> WallBudget:
        """Limit training to what --max-wall-time leaves once the validations after it are paid
        for (see :mod:`.wall_budget`); refuse the run when that buys too few steps."""
        wall = fit_wall_clock(self.model, self.valid_tokens, self.streams, self.config, self.device, self.dist,
                              self.wall_deadline, self.validations_after,
                              fewest_steps(self.steps_per_epoch, self.budget.planned_steps - self.progress.step))
        self.budget.limit_wall(wall.training_seconds)
        return wall

    def _unvalidated(self) -> bool:
        """Whether the weights may be newer than the last validation: none was finite yet, or
        the best came before the last step (a later validation may have run; validating again
        costs time and changes nothing)."""
        progress = self.progress
        return progress.step > 0 and (not math.isfinite(progress.best_valid_loss) or progress.best_step < progress.step)

    def _budget_spent(self) -> str | None:
        """A spent budget, judged the same on every rank (the clock was agreed in :meth:`_step`)."""
        if self.config.max_steps and self.progress.step >= self.config.max_steps:
            return "max_steps"
        return self.budget.time_reason() if self._agreed[1] else None

    def _should_stop(self) -> str | None:
        """Why to stop after this step, the same answer on every rank.

        The signal and the clock differ between ranks; they were agreed on in the step's
        one all-reduce (:meth:`_step`). The step count is the same everywhere.
        """
        return "signal" if self._agreed[0] else self._budget_spent()

    def _train_epoch(self) -> str | None:
        """Train from the saved position to the epoch's end; the reason it stopped early, if any."""
        config, progress, model = self.config, self.progress, self.model
        model.train()
        state = self.hidden if self.hidden is not None else model.init_state(config.batch_size, device=self.device)
        window = LogWindow(self.device, config.clip, config.log_interval, tally=progress.grad_norms)
        epoch_start = time.perf_counter()
        reason = None
        try:
            for x, y in self._segments():
                x, y = _to_device(x, self.device), _to_device(y, self.device)  # (T, B)
                if self.unk_stand_in is not None:
                    x, y = self.unk_stand_in(x, y)
                state = self._step(x, y, state, window)
                progress.segment += 1
                progress.position += len(x)
                self.callbacks.on_progress(progress.epoch, progress.segment, self.steps_per_epoch)
                self.budget.estimate(progress.step, self._tell_estimate)
                reason = self._should_stop()
                if reason:
                    break
        finally:
            synchronize(self.device)
            progress.train_seconds += time.perf_counter() - epoch_start
            window.close()  # the steps since the last log line count in the run's tally too
            self.hidden = detach_state(state)
        return reason

    def _segments(self):
        """(x, y) segments from the saved position to the epoch's end."""
        config, length = self.config, self.streams.shape[1] - 1
        if not config.random_bptt:
            yield from iter_bptt(self.streams, config.bptt, start=self.progress.position)
            return
        while self.progress.position < length:
            yield next(iter_bptt(self.streams, random_bptt_length(config.bptt), start=self.progress.position))

    def _step(self, x: torch.Tensor, y: torch.Tensor, state, window: "LogWindow"):
        config, progress = self.config, self.progress
        lr = self.schedule.lr(progress.step, self._time_spent)
        if config.random_bptt:
            lr *= len(x) / config.bptt  # a longer segment sums more gradient terms per step (AWD-LSTM)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        state = detach_state(state)
        with bf16_autocast(self.device, self.amp):
            scores, state, raw, dropped = self.objective.forward(self.forward, x, y, state)  # (T, B)
        loss = self.objective.loss(self.model, scores, raw, dropped)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # The total norm before clipping (clip 0 leaves the gradient as it is).
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.clip if config.clip > 0 else math.inf)
        # One host synchronisation per step: a non-finite step must not reach the weights.
        bad = not bool(torch.isfinite(loss) & torch.isfinite(norm))
        # Under torchrun: one all-reduce per step agrees on skipping it, on stopping after it,
        # and on the clock (the latest rank's), so every rank takes the same rate next step.
        bad, signalled, elapsed = max_all([float(bad), float(self.stop.requested is not None),
                                           self.budget.elapsed()], self.dist, self.device)
        bad = bool(bad)
        self._agreed = [bool(signalled), self.budget.out_of_time(elapsed)]
        self._time_spent = self.budget.share_spent(elapsed)
        if bad:
            return self._skip(loss, norm)
        self.optimizer.step()
        if self.average is not None:
            self.average.update()
        self.bad_in_a_row = 0
        progress.step += 1
        progress.train_tokens += y.numel()
        window.add(loss, norm, y.numel())
        # The cross-entropy alone: --ar/--tar/--l1 penalties are not what validation measures.
        self._trained[0] -= scores.detach().double().sum()
        self._trained[1] += y.numel()
        if progress.step % config.log_interval == 0:
            record = {"event": "train", "epoch": progress.epoch, "step": progress.step,
                      **window.summary(), "lr": self.optimizer.param_groups[0]["lr"],
                      "tokens": progress.train_tokens, "remaining_s": self.budget.remaining_seconds(progress.step, elapsed)}
            self.metrics.write(record)
            self.callbacks.on_log(record)
        return state

    def _skip(self, loss: torch.Tensor, norm: torch.Tensor):
        progress = self.progress
        self.optimizer.zero_grad(set_to_none=True)
        self.bad_in_a_row += 1
        progress.skipped_steps += 1
        record = {"event": "skipped", "epoch": progress.epoch, "step": progress.step,
                  "loss": float(loss.detach()), "grad_norm": float(norm), "in_a_row": self.bad_in_a_row}
        self.metrics.write(record)
        self.callbacks.on_log(record)
        if self.bad_in_a_row >= self.config.max_bad_steps:
            raise TrainingDiverged(
                f"{self.bad_in_a_row} steps in a row had a non-finite loss or gradient (step {progress.step}); "
                "stopped without writing; the checkpoints already saved are intact. Try a lower --lr or a --clip value")
        # The carried state produced the bad step; start the streams afresh.
        return self.model.init_state(self.config.batch_size, device=self.device)

    # -- validation and files -----------------------------------------------------------
    def _validate(self) -> str | None:
        """Validate (with the averaged weights once NT-ASGD averages); why to stop, if at all."""
        if self.average is not None:
            self.average.swap()
        try:
            return self._validate_current()
        finally:
            if self.average is not None:
                self.average.swap()
            self.budget.validated()  # the clock the estimates read now holds a validation

    def _validate_current(self) -> str | None:
        progress, config = self.progress, self.config
        rng = capture_rng()
        total, count = stream_loss_sum(self.model, self.valid_tokens, config.eval_batch_size, config.bptt, self.device,
                                       self.callbacks.on_validation_progress)
        total, count = sum_all([total, count], self.dist, self.device)
        loss = total / max(count, 1)
        restore_rng(rng)  # validation must not change what training draws next
        improved = math.isfinite(loss) and loss < progress.best_valid_loss
        self._finite_validations += math.isfinite(loss)
        record = {"event": "valid", "epoch": progress.epoch, "step": progress.step, "valid_loss": loss,
                  "valid_ppl": perplexity(loss), "best": improved, "train_seconds": progress.train_seconds}
        if self.average is not None and self.average.active:
            record["averaged_steps"] = self.average.count
        self.metrics.write(record)
        self.callbacks.on_validate(record)
        summary = {"valid_loss": loss, "valid_ppl": perplexity(loss), "epoch": progress.epoch,
                   "step": progress.step, "train_tokens": progress.train_tokens}
        if improved:
            progress.best_valid_loss, progress.best_step = loss, progress.step
        self.files.keep_validated(self.model, summary, improved=improved, progress=progress, keep=config.keep_checkpoints)
        self._watch_overfitting(loss)
        halt = self.schedule.after_validation(improved)
        if self.average is not None and self.average.after_validation(self.schedule.stalled):
            self.metrics.write({"event": "averaging", "epoch": progress.epoch, "step": progress.step})
        return halt

    def _watch_overfitting(self, valid_loss: float) -> None:
        """Hand the training and validation loss to the watch; log and report what it sees."""
        progress = self.progress
        trained, tokens = sum_all(self._trained.tolist(), self.dist, self.device)
        self._trained.zero_()
        if not tokens:  # validating again without a step in between (a resumed run's first)
            return
        seen = progress.overfit_watch.observe(progress.step, progress.epoch, trained / tokens, valid_loss,
                                              levers(self.model.config, self.config))
        if seen is None:
            return
        record = {"event": "overfitting", **seen}
        self.metrics.write(record)
        self.callbacks.on_overfitting(record)

    def _save_last(self) -> None:
        self.files.save_state(self.model, self.progress, self.optimizer, self.schedule.state_dict(),
                              None if self.average is None else self.average.state_dict(), self.hidden)

    def _tell_estimate(self, estimate: dict[str, Any]) -> None:
        self.metrics.write({"event": "estimate", "epoch": self.progress.epoch, **estimate})
        self.callbacks.on_estimate(estimate)

    def _result(self, stop_reason: str) -> TrainResult:
        progress = self.progress
        if (progress.step, progress.skipped_steps) != self._at_start and not self._finite_validations:
            raise TrainingDiverged(self._why_not_validated(stop_reason))
        if not math.isfinite(progress.best_valid_loss):
            raise TrainingDiverged("training diverged: validation loss was never finite; "
                                   "try a lower --lr or a --clip value")
        done = (progress.position / max(self.streams.shape[1] - 1, 1) if self.config.random_bptt
                else progress.segment / max(self.steps_per_epoch, 1))
        return TrainResult.of_run(progress, done, stop_reason, self.paths, self.dist.rank)

    def _why_not_validated(self, stop_reason: str) -> str:
        """The line for an invocation that trained but has no finite validation to show for it."""
        progress = self.progress
        return no_validation_line(progress.step - self._at_start[0], progress.skipped_steps - self._at_start[1],
                                  stop_reason, self.paths)


def _to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        # Pinned host memory lets the copy overlap with the previous step's kernels.
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)
