"""What ``rnnlm train`` shows of a run: its progress on stderr (a bar on a terminal, a log line
per interval everywhere), and once it ends, the summary table and the result line."""

from __future__ import annotations

import math
from typing import Any

from rnnlm_cli.cli.ui import Progress, log, print_json, print_table, warn
from rnnlm_cli.errors import NotPromotedError
from rnnlm_cli.text.backward import RIGHT_TO_LEFT


class TrainingReporter:
    """Training news to stderr: a bar on a terminal, a log line per interval everywhere."""

    def __init__(self, notes: list[str]) -> None:
        self._progress: Progress | None = None
        self._notes = notes

    def on_start(self, info: dict[str, Any]) -> None:
        for note in self._notes:
            log(note)
        self._notes.clear()
        budget = f", or fewer when --max-time stops it after {about(info['max_time'])}" if info["max_time"] else ""
        log(f"training on {info['device']}: {info['train_tokens']:,} train tokens, "
            f"{info['valid_tokens']:,} valid tokens, {info['parameters']:,} parameters, "
            f"{info['steps_per_epoch']:,} steps per epoch; {info['planned_steps']:,} steps planned{budget}")
        self._progress = Progress("epoch 1", total=info["steps_per_epoch"])

    def on_progress(self, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> None:
        if self._progress is not None:
            self._progress.update(step_in_epoch, total=steps_per_epoch, description=f"epoch {epoch}")

    def on_log(self, record: dict[str, Any]) -> None:
        if record["event"] == "skipped":
            log(f"epoch {record['epoch']} step {record['step']}: skipped, non-finite loss or gradient "
                f"({record['in_a_row']} in a row)")
            return
        from rnnlm_cli.train.grad_norms import percent

        clipped = f" clipped {percent(record['clipped_share'])}" if "clipped_share" in record else ""
        log(f"epoch {record['epoch']} step {record['step']}: loss {record['loss']:.4f} "
            f"ppl {record['ppl']:.2f} lr {record['lr']:.3g}{clipped} {record['tokens_per_s']:,.0f} tokens/s, "
            f"about {about(record['remaining_s'])} of training left")

    def on_validate(self, record: dict[str, Any]) -> None:
        mark = " (best)" if record["best"] else ""
        # Per token: a character model's figures are per character, a word model's per word.
        log(f"epoch {record['epoch']} valid: loss {record['valid_loss']:.4f} ppl {record['valid_ppl']:.2f} per token, "
            f"{record['valid_loss'] / math.log(2):.3f} bits per token{mark}")

    def on_estimate(self, estimate: dict[str, Any]) -> None:
        log(estimate_line(estimate))

    def on_validation_progress(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(done, total=total, description="validating")

    def on_wall_budget(self, budget: dict[str, Any]) -> None:
        steps = int(budget["training_seconds"] / max(budget["seconds_per_step"], 1e-12))
        log(f"--max-wall-time: {about(budget['wall_left'])} left once the data is read; training stops after "
            f"{about(budget['training_seconds'])} (about {steps:,} steps at {budget['seconds_per_step']:.3g} s a step), "
            f"keeping {about(budget['reserve'])} for validating and saving")

    def on_overfitting(self, record: dict[str, Any]) -> None:
        log(record["message"])

    def close(self) -> None:
        if self._progress is not None:
            self._progress.close()


def estimate_line(estimate: dict[str, Any]) -> str:
    """The line for an estimate of the run's time (:meth:`RunBudget.estimate`): the first one,
    or a refreshed one; a range where the pace is uncertain."""
    kind = "first estimate" if estimate["first"] else "estimate refreshed"
    line = (f"time ({kind}, {estimate['timed_steps']:,} steps timed): {estimate['seconds_per_step']:.3g} s a step, "
            f"{about(estimate['seconds_per_epoch'])} an epoch; ")
    if estimate["clock_ends_run"]:
        # The clock ends the run: the steps it would otherwise take (for a run the clock
        # alone bounds, millions) say nothing, where it stops says what the run will do.
        stop = [estimate["stop_step"]] if not estimate["range"] else [estimate["stop_step_low"], estimate["stop_step_high"]]
        line += (f"{estimate['clock']} stops the run after {about(estimate['max_time_left'])} of training, near step "
                 f"{'-'.join(f'{step:,}' for step in sorted(set(stop)))} of the {estimate['planned_steps']:,} planned")
    else:
        seconds = ((estimate["remaining_low"], estimate["remaining_high"]) if estimate["range"]
                   else (estimate["remaining_seconds"],))
        line += f"the {estimate['remaining_steps']:,} steps left take about {about(*seconds)} of training"
    validations = estimate["validations_timed"]
    return line + (f" (the {validations} validation{'s' if validations > 1 else ''} so far included)" if validations
                   else " (validation not included)")


def about(seconds: float, up_to: float | None = None) -> str:
    """12 s, 4.5 min, 3.2 h: a length of time at the precision an estimate has; with ``up_to``,
    a range in the longer one's unit (9.0-14.0 min), or one figure when both round alike."""
    top = seconds if up_to is None else up_to
    unit, size, digits = ("s", 1, 0) if top < 90 else ("min", 60, 1) if top < 5400 else ("h", 3600, 1)
    low, high = f"{seconds / size:.{digits}f}", f"{top / size:.{digits}f}"
    return f"{high} {unit}" if low == high else f"{low}-{high} {unit}"


def report_result(result: Any, job: Any, json_output: bool) -> None:
    """What a finished run shows: the promotion, the summary table, the diagnoses, and the
    result line (or ``--json``) on stdout; NotPromotedError (exit 3) when promotion kept the
    model in place, after everything is shown."""
    if result.promotion:
        log(result.promotion)
    try:
        curve = _plot(result.paths.metrics, job.out) if job.plot else None
        print_table("training summary", _summary_rows(result, curve))
        if result.clip_diagnosis:
            log(result.clip_diagnosis)
        if result.overfitting:
            log(result.overfitting["message"])
        if json_output:
            print_json(result.to_dict())
        else:
            print(f"best valid ppl {result.best_valid_ppl:.2f} after {result.steps} steps "
                  f"({result.epochs:.2f} epochs, {result.seconds:.1f} s, {result.tokens_per_second:,.0f} tokens/s, "
                  f"stopped by {result.stop_reason}); model: {result.paths.model}")
    finally:
        # A cron job tells "kept the current model" by this code, even when nobody reads the summary.
        if result.promoted is False:
            raise NotPromotedError(result.promotion)


def _plot(metrics_path: str, model_path: str) -> str | None:
    """Draw the curves beside the model; a failure is a warning, since the model is already saved."""
    from rnnlm_cli.errors import RnnlmError
    from rnnlm_cli.train.plot import curve_path, plot_metrics

    path = curve_path(model_path)
    try:
        plot_metrics(metrics_path, path)
    except RnnlmError as exc:
        warn(f"no learning curves: {exc}")
        return None
    return path


def _summary_rows(result: Any, curve: str | None) -> list[tuple[str, str]]:
    """The summary table's rows: the figures of the result line, and the ones only metrics.jsonl knows."""
    from rnnlm_cli.errors import RnnlmError
    from rnnlm_cli.train.plot import read_curves

    try:
        curves = read_curves(result.paths.metrics)
        best, last_lr = curves.best_valid(), curves.last_lr()
    except RnnlmError:
        best = last_lr = None
    best_text = f"{result.best_valid_ppl:.2f}"
    if best is not None:
        best_text += f" at step {best[0]:,}"
    files = [("model", result.paths.model), ("last", result.paths.last), ("metrics", result.paths.metrics)]
    if curve is not None:
        files.append(("curve", curve))
    return [
        ("stopped by", result.stop_reason),
        ("steps", f"{result.steps:,}"),
        ("epochs", f"{result.epochs:.2f}"),
        ("train tokens", f"{result.train_tokens:,}"),
        ("tokens/s", f"{result.tokens_per_second:,.0f}"),
        ("train time", _duration(result.seconds)),
        ("best valid ppl", best_text),
        ("skipped steps", f"{result.skipped_steps:,}"),
        *_gradient_rows(result),
        *_overfitting_rows(result),
        *([("direction", f"{result.direction} (a backward model)")] if result.direction == RIGHT_TO_LEFT else []),
        ("last lr", "not logged" if last_lr is None else f"{last_lr[1]:.4g} (step {last_lr[0]:,})"),
        *((f"{name} file", path) for name, path in files),
    ]


def _gradient_rows(result: Any) -> list[tuple[str, str]]:
    """The summary's rows on the gradient norm: how often --clip fired, and the norm's median and largest."""
    from rnnlm_cli.train.grad_norms import percent

    rows = []
    if result.clipped_share is not None:
        rows.append(("clipped steps", f"{percent(result.clipped_share)} ({result.clipped_steps:,} of {result.clip_steps:,})"))
    if result.grad_norm_median is not None:
        rows.append(("gradient norm", f"median about {result.grad_norm_median:.3g}, largest {result.grad_norm_max:.3g}"))
    return rows


def _overfitting_rows(result: Any) -> list[tuple[str, str]]:
    """The summary's row on memorising: where training kept improving and validation stopped."""
    seen = result.overfitting
    if not seen:
        return []
    return [("overfitting", f"from step {seen['step']:,}: train ppl {seen['train_ppl']:.1f}, valid ppl "
                            f"{seen['valid_ppl']:.1f} ({seen['ratio']:.2f}x; see below)")]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d} ({seconds:,.0f} s)"
