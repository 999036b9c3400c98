"""Continuing a stopped run: which state file, whether it is the run to continue (``--resume
auto`` beside ``--init-from``), the settings it keeps, whether it fits this run, and the point
to go on from.

What the user can fix with other flags is said first (exit 2; another corpus is exit 65);
only then is every field of the saved state checked (``TrainState.from_dict`` in
:mod:`rnnlm_cli.train.state`) before any of it is used.
"""

from __future__ import annotations

import dataclasses
import math
import os

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.errors import TokenizerMismatchError, UsageError
from rnnlm_cli.models.config import shape_keys
from rnnlm_cli.text.backward import LEFT_TO_RIGHT, RIGHT_TO_LEFT
from rnnlm_cli.text.reading import check_readable
from rnnlm_cli.train.outputs import OutputPaths
from rnnlm_cli.train.job import TrainJob
from rnnlm_cli.train.start import FRESH_START, check_resumed_shape
from rnnlm_cli.train.state import TrainState, check_training_state

AUTO = "auto"

def resume_path(resume: str | None, paths: OutputPaths) -> str | None:
    """The state file ``--resume`` names: a path, or for "auto" the run's own if it exists."""
    if resume is None:
        return None
    if resume == AUTO:
        return paths.last if os.path.exists(paths.last) else None
    check_readable(resume)
    return resume


_RESUME_KEYS = ("batch_size", "bptt", "random_bptt", "optimizer")
"""Training settings a resumed run must keep: the saved state is only valid with them."""


def _check_resumable_settings(path: str, saved: dict, config: TrainConfig) -> None:
    for name in _RESUME_KEYS:
        wanted = getattr(config, name)
        # A value of another type is damage, reported by the state check (exit 65).
        if name in saved and type(saved[name]) is type(wanted) and saved[name] != wanted:
            raise UsageError(f"{path}: the run being resumed used --{name.replace('_', '-')} {saved[name]}, "
                             f"not {wanted}; resume with the same setting, {FRESH_START}")


def tokenizer_options(job: TrainJob) -> dict:
    """What makes a run's token ids besides its text: the tokenizer given or the kind learned,
    and how it is learned (kept in a run's provenance, so a resume can tell a changed option
    from a changed corpus)."""
    options = {"tokenizer": job.tokenizer or "word"}
    options.update(dataclasses.asdict(job.tokenizer_config))
    options.pop("kind")  # --tokenizer names it
    if not options["reverse"]:
        del options["reverse"]  # as a run saved before --reverse existed recorded its options
    return options


def resume_refusal(job: TrainJob, path: str, saved, fingerprint: str, world_size: int) -> str | None:
    """Why the run saved in ``path`` cannot go on under ``job``'s options and ``world_size``
    processes (None: it can, or it is refused for another reason): the refusals of options
    :func:`load_resume_point` and the model's rebuild would make, found before anything is
    built. Not among them: training data other than ``fingerprint``'s (another job, whose
    state must not be lost: refused, 65) and damage (refused, 65, when it is read)."""
    config = saved.train_config if isinstance(saved.train_config, dict) else {}
    provenance = config.get("provenance") if isinstance(config.get("provenance"), dict) else {}
    learned_with, today = provenance.get("tokenizer_options"), tokenizer_options(job)
    if isinstance(learned_with, dict) and learned_with != today:
        # Other tokenizer options give other ids: the tokens differ though the text is the same.
        changed = sorted(name for name in {**learned_with, **today} if learned_with.get(name) != today.get(name))
        return "its vocabulary was learned with other " + ", ".join("--" + name.replace("_", "-") for name in changed)
    before = provenance.get("data_fingerprint")
    if before is not None and before != fingerprint:
        return None  # another corpus is another job: its state is kept and the resume refused (65)
    state = saved.training_state if isinstance(saved.training_state, dict) else {}
    saved_world = state.get("world_size", 1)
    if type(saved_world) is int and saved_world != world_size:
        return f"it used {saved_world} process(es), this run {world_size}"
    try:
        _check_resumable_settings(path, config, saved_settings(job, saved).train)
        check_resumed_shape(job, saved.model_config)
    except UsageError as exc:
        return str(exc).removeprefix(f"{path}: ").split("; ")[0]
    return None


def check_resumed_direction(path: str, saved, tokenizer) -> None:
    """UsageError when the run saved in ``path`` reads its lines in the other direction than
    ``tokenizer`` (this run's): its weights predict the other way (not the data changing)."""
    stored = saved.tokenizer if isinstance(saved.tokenizer, dict) else {}
    was_reverse = stored.get("reverse", False) is True
    if was_reverse == tokenizer.reverse:
        return
    then, now = (RIGHT_TO_LEFT, LEFT_TO_RIGHT) if was_reverse else (LEFT_TO_RIGHT, RIGHT_TO_LEFT)
    fix = "give --reverse again" if was_reverse else "drop --reverse"
    raise UsageError(f"{path}: the run being resumed reads each line {then}, this one {now}; {fix}, {FRESH_START}")


def load_resume_point(path: str, checkpoint, model, fingerprint: str, context, config: TrainConfig) -> TrainState:
    """The checked state of ``checkpoint`` (read from ``path``) to resume from, its weights
    loaded into ``model`` (built from the checkpoint's config); this run trains on data of
    ``fingerprint`` with ``config``, in the processes of ``context``."""
    state = checkpoint.training_state
    if not state:
        raise UsageError(f"{path}: not a resumable training state (use the .last.pt file beside the model)")
    # What the user can fix with other flags is said first (exit 2, 65 for other data); only
    # then is every field checked, before any is used: a crafted moment of the wrong shape
    # would make the fused optimizer write out of bounds.
    provenance = checkpoint.train_config.get("provenance")
    saved = provenance.get("data_fingerprint") if isinstance(provenance, dict) else None
    if saved is not None and saved != fingerprint:
        raise TokenizerMismatchError(f"{path}: the training data changed since this run started; "
                                     f"resume needs the same corpus, {FRESH_START}")
    _check_resumable_settings(path, checkpoint.train_config, config)
    if any(getattr(checkpoint.model_config, k) != getattr(model.config, k) for k in shape_keys() + ("vocab_size",)):
        raise UsageError(f"{path}: the run being resumed trains a model of another shape; "
                         f"give the same shape options, or none, {FRESH_START}")
    saved_world = state.get("world_size", 1) if isinstance(state, dict) else 1
    if saved_world != context.world_size and type(saved_world) is int:
        raise UsageError(f"{path}: the run used {saved_world} process(es); resume it with the same number, "
                         f"{FRESH_START}")
    resume = check_training_state(path, checkpoint, model, config, context.world_size)
    model.load_state_dict(checkpoint.state_dict)
    return resume


def track_best_on(resume: TrainState, saved, valid_fingerprint: str, paths: OutputPaths, valid, config: TrainConfig,
                   device, context, notes: list[str]) -> None:
    """Resumed with other validation text: the best score so far is re-measured on it.

    A best loss from another validation set compares with nothing; the best model already
    saved is scored on the new text, so it is replaced only by a model better there.
    """
    from rnnlm_cli.store.checkpoint import load_model
    from rnnlm_cli.train.distributed import shard, sum_all
    from rnnlm_cli.train.validation import stream_loss_sum

    before = saved.train_config.get("provenance", {}).get("valid_fingerprint")
    if before is None or before == valid_fingerprint:
        return
    progress = resume.progress
    if os.path.exists(paths.model):
        best_model = load_model(paths.model, device)[0]
        total, count = stream_loss_sum(best_model, shard(valid, context), config.eval_batch_size, config.bptt, device)
        total, count = sum_all([total, count], context, device)
        progress.best_valid_loss = total / max(count, 1)
        notes.append(f"the validation text differs from the resumed run's: best-score tracking restarts from "
                     f"{paths.model} scored on it (ppl {math.exp(min(progress.best_valid_loss, 700)):.2f})")
    else:
        progress.best_valid_loss, progress.best_step = math.inf, -1
        notes.append("the validation text differs from the resumed run's: best-score tracking restarts")


def why_not_resumed(job: TrainJob, saved, fingerprint) -> str | None:
    """With ``--resume auto`` and ``--init-from``, why the saved run is not the one to continue
    (None: it is): it trained on other data (a corpus that grew overnight), or its steps or
    epochs are done. ``fingerprint()`` gives the training tokens' fingerprint. Any other
    combination resumes what it was given, and the resume checks refuse what does not fit."""
    if saved is None or job.resume != AUTO or job.init_from is None:
        return None
    config = saved.train_config if isinstance(saved.train_config, dict) else {}
    provenance = config.get("provenance")
    if not isinstance(provenance, dict) or provenance.get("data_fingerprint") != fingerprint():
        return "holds a run on other data"
    state = saved.training_state if isinstance(saved.training_state, dict) else {}
    progress = state.get("progress") if isinstance(state.get("progress"), dict) else {}
    step, epoch = progress.get("step"), progress.get("epoch")
    if type(step) is int and job.train.max_steps and step >= job.train.max_steps:
        return f"holds a finished run (step {step} of --max-steps {job.train.max_steps})"
    if type(epoch) is int and epoch > job.train.epochs:
        return f"holds a finished run ({job.train.epochs} epochs done)"
    return None


KEPT_ON_RESUME = {"batch_size": int, "lr": float, "clip": float, "schedule": str}
"""Options a resumed run keeps from the run it continues unless given again, with their types."""


def saved_settings(job: TrainJob, saved) -> TrainJob:
    """A resumed run keeps the batch, rate, clip and schedule it was started with unless given:
    a batch (or rate) chosen for the corpus and device could differ on another machine, the
    saved state is only valid with its own batch (a given one is checked against it), and a
    run begun under an earlier rnnlm's defaults continues under them, not under today's."""
    config = saved.train_config if isinstance(saved.train_config, dict) else {}
    kept = {}
    for name, kind in KEPT_ON_RESUME.items():
        value = config.get(name)
        given = job.origins is None or job.origins.get(name) in ("flag", "config")
        if given or value is None or type(value) is not kind and not (kind is float and type(value) is int):
            continue  # a damaged value is refused by the state's checks
        kept[name] = value
    if not kept:
        return job
    try:
        return dataclasses.replace(job, train=dataclasses.replace(job.train, **kept))
    except UsageError:
        return job  # out of range: the state's checks say what is wrong with it
