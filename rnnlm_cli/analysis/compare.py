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

Unless the options set them, ``--max-steps 0`` and an unreachable ``--epochs`` let the clock
alone end every run, so each gets the same budget (a cosine schedule anneals over it).
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import yaml

from rnnlm_cli.analysis.variants import Variant
from rnnlm_cli.config import check_seed, check_values
from rnnlm_cli.errors import DataError, RnnlmError, TrainingInterrupted, UsageError
from rnnlm_cli.files.atomic import atomic_open

UNREACHABLE_EPOCHS = 1_000_000
"""--epochs for runs the clock ends: large enough never to stop one first."""

MAX_REPEAT = 1000
"""Largest --repeat: seeds per variant."""

REACH_POSITIONS = 128
"""Positions of the validation text the gradient reach is measured on, per run."""


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


def run_spec(comparison: Comparison, run: Run) -> dict[str, Any]:
    """What makes a run the same run: kept in its folder, checked when a comparison continues."""
    return {"corpus": os.path.abspath(comparison.corpus), "valid": os.path.abspath(comparison.valid),
            "budget": float(comparison.budget), "preset": comparison.preset, "seed": run.seed,
            "options": {**comparison.shared, **run.variant.options}}


def check_same_run(comparison: Comparison, run: Run) -> None:
    """UsageError when ``run``'s folder holds a run of other data, budget or options: continuing
    it, or keeping its figures, would put unlike runs side by side."""
    path = run.file("spec.json")
    try:
        with open(path, encoding="utf-8") as handle:
            kept = json.load(handle)
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); remove {run.folder} to train the run again") from exc
    wanted = json.loads(json.dumps(run_spec(comparison, run)))  # as JSON would give it back
    differs = sorted(key for key in wanted if kept.get(key) != wanted[key])
    if differs:
        raise UsageError(f"{run.folder} holds a run with another {', '.join(differs)}: give another --out, "
                         "or remove that folder to train it again")


def is_done(run: Run) -> bool:
    return os.path.exists(run.file("result.json"))


def run_comparison(comparison: Comparison, measure: Callable[[Comparison, Run, dict], RunResult],
                   say: Callable[[str], None] = lambda _: None, slots: list[dict[str, str]] | None = None) -> list[RunResult]:
    """Train the runs not yet done, measure them, and return every run's result in plan order.

    ``measure(comparison, run, train_result)`` gives a run's figures once it has trained;
    ``slots`` are the environments runs may use at once (one per GPU), default one: the
    current environment, runs one after another.
    """
    runs = plan_runs(comparison)
    pending = [run for run in runs if not is_done(run)]
    done = len(runs) - len(pending)
    if done:
        say(f"{done} of {len(runs)} runs already done in {comparison.out}: kept")
    for run in runs:
        check_same_run(comparison, run)
    for run in pending:
        os.makedirs(run.folder, exist_ok=True)
        with atomic_open(run.file("options.yaml")) as handle:
            yaml.safe_dump({**comparison.shared, **run.variant.options}, handle, sort_keys=True)
        with atomic_open(run.file("spec.json")) as handle:
            json.dump(run_spec(comparison, run), handle, indent=1, sort_keys=True)
    to_train = [run for run in pending if not os.path.exists(run.file("train.json"))]
    _train_all(comparison, to_train, slots or [{}], say)
    for run in pending:
        with open(run.file("train.json"), encoding="utf-8") as handle:
            trained = json.load(handle)
        result = measure(comparison, run, trained)
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


def read_result(run: Run) -> RunResult:
    path = run.file("result.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return RunResult(**json.load(handle))
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a result of rnnlm compare ({exc}); remove it to measure the run again") from exc


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
