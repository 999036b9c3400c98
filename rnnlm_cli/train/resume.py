"""Continuing a stopped run: which state file, whether it fits this run, and the point to go on from.

What the user can fix with other flags is said first (exit 2; another corpus is exit 65);
only then is every field of the saved state checked (``TrainState.from_dict`` in
:mod:`rnnlm_cli.train.state`) before any of it is used.
"""

from __future__ import annotations

import math
import os

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.errors import TokenizerMismatchError, UsageError
from rnnlm_cli.models.config import shape_keys
from rnnlm_cli.text.reading import check_readable
from rnnlm_cli.train.outputs import OutputPaths
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
                             f"not {wanted}; resume with the same setting")


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
                                     "resume needs the same corpus (or start anew with --init-from)")
    _check_resumable_settings(path, checkpoint.train_config, config)
    if any(getattr(checkpoint.model_config, k) != getattr(model.config, k) for k in shape_keys() + ("vocab_size",)):
        raise UsageError(f"{path}: the run being resumed trains a model of another shape; "
                         "give the same shape options, or none")
    saved_world = state.get("world_size", 1) if isinstance(state, dict) else 1
    if saved_world != context.world_size and type(saved_world) is int:
        raise UsageError(f"{path}: the run used {saved_world} process(es); resume it with the same number")
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
