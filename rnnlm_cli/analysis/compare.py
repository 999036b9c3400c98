"""Train several variants at one time budget, measure each the same way, put them side by side.

The output folder keeps everything, one folder per run::

    OUT/<variant>/[seed<S>/]   options.yaml   the run's train options (shared + the variant's)
                               model.pt ...   what 'rnnlm train' writes: model, .last.pt, metrics
                               train.json     the run's training result (written when it ends)
                               result.json    the measured figures (written last: the run is done)

Each run is ``rnnlm train`` in a child process (its own memory, threads and seed, as a
user's run would be), with ``--max-time BUDGET --resume auto``: a comparison stopped midway
and started again skips the runs with a ``result.json``, continues the one that was cut
short from its ``.last.pt`` (its time budget counts the seconds already trained), and
starts the others. With several CUDA GPUs visible each run gets one, several at a time;
otherwise the runs go one after another.

What each folder's records must match for a run or its figures to be kept is
:mod:`rnnlm_cli.analysis.compare_records`' concern.

Unless the options set them, ``--max-steps 0`` and an unreachable ``--epochs`` let the clock
alone end every run, so each gets the same budget (a cosine schedule anneals over it).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import yaml

from rnnlm_cli.analysis.comparison import Comparison, Run, RunResult, plan_runs
from rnnlm_cli.analysis.compare_records import (REACH_POSITIONS, check_same_run, input_digests, is_done,
                                                measure_spec, read_result, read_trained, run_spec)
from rnnlm_cli.errors import (DataError, InputMissingError, LockedError, OutputError, RnnlmError,
                              TrainingInterrupted, UsageError)
from rnnlm_cli.files.atomic import atomic_open

UNREACHABLE_EPOCHS = 1_000_000
"""--epochs for runs the clock ends: large enough never to stop one first."""

def check_variants(comparison: Comparison) -> None:
    """Every variant's options resolved as its ``rnnlm train`` will resolve them, before any run
    trains: a bad value in the last variant must not surface after the first one's budget."""
    from rnnlm_cli.train.job import resolve_train

    for variant in comparison.variants:
        try:
            resolve_train(comparison.corpus, {**comparison.shared, **variant.options}, preset=comparison.preset)
        except UsageError as exc:
            raise UsageError(f"variant {variant.name}: {exc}") from None


def train_command(comparison: Comparison, run: Run) -> list[str]:
    """The ``rnnlm train`` command line of ``run``, with this interpreter."""
    options = {**comparison.shared, **run.variant.options}
    command = [sys.executable, "-m", "rnnlm_cli", "train", comparison.corpus, "--valid", comparison.valid,
               "--out", run.model, "--config", run.file("options.yaml"), "--max-time", repr(float(comparison.budget)),
               "--resume", "auto", "--seed", str(run.seed), "--json"]
    if "max_steps" not in options:
        command += ["--max-steps", "0"]
    if "epochs" not in options:
        command += ["--epochs", str(UNREACHABLE_EPOCHS)]
    if "device" not in options:
        command += ["--device", comparison.device]
    if comparison.preset:
        command += ["--preset", comparison.preset]
    return command


def run_comparison(comparison: Comparison, measure: Callable[[Comparison, Run, dict], RunResult],
                   say: Callable[[str], None] = lambda _: None, slots: list[dict[str, str]] | None = None) -> list[RunResult]:
    """Train the runs not yet done, measure them, and return every run's result in plan order.

    ``measure(comparison, run, train_result)`` gives a run's figures once it has trained;
    ``slots`` are the environments runs may use at once (one per GPU), default one: the
    current environment, runs one after another.
    """
    check_variants(comparison)
    runs = plan_runs(comparison)
    digests = input_digests(comparison)
    measured_on = json.loads(json.dumps(measure_spec(comparison, digests)))  # as result.json gives it back
    for run in runs:
        check_same_run(comparison, run, digests)
    pending = [run for run in runs if not is_done(run, measured_on)]
    done = len(runs) - len(pending)
    if done:
        say(f"{done} of {len(runs)} runs already done in {comparison.out}: kept")
    for run in pending:
        os.makedirs(run.folder, exist_ok=True)
        with atomic_open(run.file("options.yaml")) as handle:
            yaml.safe_dump({**comparison.shared, **run.variant.options}, handle, sort_keys=True)
        with atomic_open(run.file("spec.json")) as handle:
            json.dump(run_spec(comparison, run, digests), handle, indent=1, sort_keys=True)
    to_train = [run for run in pending if not os.path.exists(run.file("train.json"))]
    trained_before = len(pending) - len(to_train)
    if trained_before:
        say(f"{trained_before} trained run(s) kept and measured (again): no figures for these inputs yet")
    _train_all(comparison, to_train, slots or [{}], say)
    for run in pending:
        result = measure(comparison, run, read_trained(run))
        result.measured_on = measured_on
        with atomic_open(run.file("result.json")) as handle:
            json.dump(asdict(result), handle, indent=1)
    return [read_result(run) for run in runs]


def measure_run(comparison: Comparison, run: Run, trained: dict[str, Any], device) -> RunResult:
    """The figures of a trained run: its training result, the test perplexity (stream context,
    as 'rnnlm eval' gives it), its size, its gradient reach on the validation text, and its
    accuracy on the minimal pairs."""
    from rnnlm_cli.analysis.gradients import GradientConfig, gradient_profile
    from rnnlm_cli.models.lm import parameter_count
    from rnnlm_cli.score.evaluate import evaluate_file
    from rnnlm_cli.store.checkpoint import load_model

    model, tokenizer, _ = load_model(run.model, device)
    test_ppl = None
    if comparison.test is not None:
        test_ppl = evaluate_file(model, tokenizer, comparison.test, device).ppl
    try:
        reach = gradient_profile(model, tokenizer, comparison.valid, device,
                                 GradientConfig(positions=REACH_POSITIONS)).reach
    except DataError:
        reach = None  # a validation text shorter than one window: no figure, not a failed comparison
    accuracy = by_distance = None
    if comparison.pairs is not None:
        from rnnlm_cli.score.pairs import evaluate_pairs

        pairs = evaluate_pairs(model, tokenizer, comparison.pairs, device)
        accuracy = pairs.overall.accuracy
        by_distance = {bucket.label: bucket.accuracy for bucket in pairs.by_distance}
    return RunResult(variant=run.variant.name, seed=run.seed, folder=run.folder,
                     valid_ppl=float(trained["best_valid_ppl"]), test_ppl=test_ppl, params=parameter_count(model),
                     tokens_per_s=float(trained["tokens_per_second"]), steps=int(trained["steps"]),
                     train_seconds=float(trained["seconds"]), reach=reach, pair_accuracy=accuracy,
                     pair_accuracy_by_distance=by_distance)


def _train_all(comparison: Comparison, runs: list[Run], slots: list[dict[str, str]], say: Callable[[str], None]) -> None:
    """Run the trainings, at most one per slot at a time; each writes train.json when it ends well."""
    waiting = list(runs)
    busy: dict[int, tuple[Run, subprocess.Popen]] = {}
    try:
        while waiting or busy:
            for slot, environment in enumerate(slots):
                if slot not in busy and waiting:
                    run = waiting.pop(0)
                    gpu = environment.get("CUDA_VISIBLE_DEVICES")
                    where = f" on GPU {gpu}" if gpu is not None else ""
                    say(f"training {os.path.relpath(run.folder, comparison.out)} (seed {run.seed}) "
                        f"for {comparison.budget:g} s{where}")
                    busy[slot] = (run, subprocess.Popen(train_command(comparison, run), stdout=subprocess.PIPE,
                                                        env={**os.environ, **environment}))
            slot, (run, process) = _first_finished(busy)
            del busy[slot]
            out, _ = process.communicate()
            signum = -process.returncode if process.returncode < 0 else process.returncode - 128
            if signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                raise TrainingInterrupted(f"{run.folder}: training stopped by {signal.Signals(signum).name}, its state "
                                          "saved; run the same command again to continue where it stopped", signum)
            if process.returncode == LockedError.exit_code:
                raise LockedError(f"{run.folder}: another process is using this run's files (its message is "
                                  "above); wait for it to end, or give another --out")
            if process.returncode in PASSED_ON_EXITS:
                failed = RnnlmError(f"{run.folder}: training refused its input with exit {process.returncode} "
                                    "(its message is above)")
                failed.exit_code = process.returncode
                raise failed
            if process.returncode != 0:
                raise RnnlmError(f"{run.folder}: training stopped with exit {process.returncode} (its log is above); "
                                 "run the same command again to continue where it stopped")
            try:
                trained = json.loads(out.decode("utf-8").strip().splitlines()[-1])
            except (ValueError, IndexError) as exc:
                raise RnnlmError(f"{run.folder}: training printed no result ({exc})") from exc
            with atomic_open(run.file("train.json")) as handle:
                json.dump(trained, handle, indent=1)
    finally:
        for _, process in busy.values():  # an interrupted comparison leaves no training behind
            process.terminate()
            process.wait()


PASSED_ON_EXITS = (UsageError.exit_code, DataError.exit_code, InputMissingError.exit_code, OutputError.exit_code)
"""A training's exits that say what is wrong with the input or output: the comparison ends with the same."""


def _first_finished(busy: dict[int, tuple[Run, subprocess.Popen]]) -> tuple[int, tuple[Run, subprocess.Popen]]:
    if len(busy) == 1:
        slot, entry = next(iter(busy.items()))
        entry[1].wait()
        return slot, entry
    while True:
        for slot, entry in busy.items():
            if entry[1].poll() is not None:
                return slot, entry
        time.sleep(0.5)


@dataclass
class Summary:
    """One variant's runs: mean and standard deviation of each figure (std 0 for one run)."""

    variant: str
    runs: int
    figures: dict[str, tuple[float, float] | None]
    """name -> (mean, std) over the runs, None when no run has it."""


FIGURES = ("valid_ppl", "test_ppl", "params", "tokens_per_s", "reach", "pair_accuracy")


def summarize(results: list[RunResult]) -> list[Summary]:
    """Group the runs by variant, in plan order."""
    groups: dict[str, list[RunResult]] = {}
    for result in results:
        groups.setdefault(result.variant, []).append(result)
    summaries = []
    for variant, members in groups.items():
        figures: dict[str, tuple[float, float] | None] = {}
        for name in FIGURES:
            values = [getattr(m, name) for m in members]
            if any(value is None for value in values):  # not measured, or a reach beyond the distances measured
                figures[name] = None
                continue
            figures[name] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
        summaries.append(Summary(variant, len(members), figures))
    return summaries


def valid_curve(metrics_path: str) -> tuple[list[float], list[float]]:
    """(training seconds, validation perplexity) of each validation in a run's metrics file."""
    seconds, ppls = [], []
    try:
        with open(metrics_path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if record.get("event") == "valid" and "train_seconds" in record:
                    while seconds and seconds[-1] >= record["train_seconds"]:  # a resumed run re-logs
                        seconds.pop()
                        ppls.pop()
                    seconds.append(float(record["train_seconds"]))
                    ppls.append(float(record["valid_ppl"]))
    except FileNotFoundError:
        pass
    return seconds, ppls
