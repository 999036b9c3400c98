"""What ``rnnlm compare`` keeps in each run's folder, and the checks that decide whether a kept
run or its figures still stand.

A run's ``spec.json`` holds what its training depends on: the size and SHA-256 of the corpus
and validation text (the same text under another name is the same input; a file changed in
place is another), the budget, the preset, the seed and the options. Its ``result.json``
records what the figures were measured on beyond that (the test and pairs files); figures
measured on other ones are measured again, without training again. ``train.json`` and
``result.json`` are read with their fields checked: a damaged record is refused by name, or,
for the derived ``result.json``, measured again.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from typing import Any

from rnnlm_cli.analysis.comparison import Comparison, Run, RunResult
from rnnlm_cli.errors import DataError, UsageError

REACH_POSITIONS = 128
"""Positions of the validation text the gradient reach is measured on, per run."""


def content_digest(path: str) -> dict[str, Any]:
    """The size and SHA-256 of a file's bytes: the same text under another name is the same
    input, and a file changed in place is another."""
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return {"bytes": size, "sha256": digest.hexdigest()}


def run_spec(comparison: Comparison, run: Run, digests: dict[str, dict] | None = None) -> dict[str, Any]:
    """What makes a run the same run: kept in its folder, checked when a comparison continues."""
    digests = digests or input_digests(comparison)
    return {"corpus": digests["corpus"], "valid": digests["valid"],
            "budget": float(comparison.budget), "preset": comparison.preset, "seed": run.seed,
            "options": {**comparison.shared, **run.variant.options}}


def measure_spec(comparison: Comparison, digests: dict[str, dict] | None = None) -> dict[str, Any]:
    """What a run's figures depend on beyond its training: the test and pairs files' contents
    and the validation text the reach is measured on."""
    digests = digests or input_digests(comparison)
    return {"test": digests["test"], "pairs": digests["pairs"], "valid": digests["valid"],
            "reach_positions": REACH_POSITIONS}


def input_digests(comparison: Comparison) -> dict[str, dict | None]:
    """:func:`content_digest` of each input the comparison reads (None for one not given)."""
    return {name: None if getattr(comparison, name) is None else content_digest(getattr(comparison, name))
            for name in ("corpus", "valid", "test", "pairs")}


def check_same_run(comparison: Comparison, run: Run, digests: dict[str, dict] | None = None) -> None:
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
    if not isinstance(kept, dict):
        raise DataError(f"{path}: not a run description of rnnlm compare; remove {run.folder} to train the run again")
    wanted = json.loads(json.dumps(run_spec(comparison, run, digests)))  # as JSON would give it back
    differs = sorted(key for key in wanted if kept.get(key) != wanted[key])
    if differs:
        raise UsageError(f"{run.folder} holds a run with another {', '.join(differs)}: give another --out, "
                         "or remove that folder to train it again")


def is_done(run: Run, measured_on: dict[str, Any]) -> bool:
    """Whether ``run`` has figures measured on the inputs ``measured_on`` describes."""
    if not os.path.exists(run.file("result.json")):
        return False
    try:
        return read_result(run).measured_on == measured_on
    except DataError:
        return False  # figures are derived: measured again rather than trusted or refused


TRAINED_FIELDS = {"best_valid_ppl": numbers.Real, "tokens_per_second": numbers.Real, "steps": numbers.Integral,
                  "seconds": numbers.Real}
"""The fields of a run's train.json (``rnnlm train --json``) the comparison reads, and their types."""


def read_trained(run: Run) -> dict[str, Any]:
    """A run's training result, its fields checked: a damaged file is refused by name."""
    path = run.file("train.json")
    try:
        with open(path, encoding="utf-8") as handle:
            trained = json.load(handle)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); remove {run.folder} to train the run again") from exc
    if not isinstance(trained, dict) or any(not _is(trained.get(key), kind) for key, kind in TRAINED_FIELDS.items()):
        raise DataError(f"{path}: not a training result of rnnlm train; remove {run.folder} to train the run again")
    return trained


def _is(value: Any, kind: type) -> bool:
    """``value`` a finite number of ``kind`` (bool is not a number here)."""
    return isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)


RESULT_FIELDS = {"valid_ppl": numbers.Real, "params": numbers.Integral, "tokens_per_s": numbers.Real,
                 "steps": numbers.Integral, "train_seconds": numbers.Real}
"""The figures every result has, and their types; test_ppl, reach and pair_accuracy may be None."""
OPTIONAL_FIELDS = {"test_ppl": numbers.Real, "reach": numbers.Integral, "pair_accuracy": numbers.Real}


def read_result(run: Run) -> RunResult:
    path = run.file("result.json")
    try:
        with open(path, encoding="utf-8") as handle:
            result = RunResult(**json.load(handle))
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a result of rnnlm compare ({exc}); remove it to measure the run again") from exc
    wrong = [name for name, kind in RESULT_FIELDS.items() if not _is(getattr(result, name), kind)]
    wrong += [name for name, kind in OPTIONAL_FIELDS.items()
              if getattr(result, name) is not None and not _is(getattr(result, name), kind)]
    if wrong or not isinstance(result.measured_on, (dict, type(None))):
        raise DataError(f"{path}: not a result of rnnlm compare ({', '.join(wrong) or 'measured_on'} damaged); "
                        "remove it to measure the run again")
    # The folder and names are this comparison's, whatever the file says.
    result.variant, result.seed, result.folder = run.variant.name, run.seed, run.folder
    return result
