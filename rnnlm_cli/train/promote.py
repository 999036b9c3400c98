"""Replacing the model users load only when a new one is better (cron retraining).

Promotion is a transaction on the target:

1. The target is resolved first: a symlink's referent is what gets replaced, so the link
   (``current.pt -> models/v3.pt``) stays a link and ``models/v3.pt`` gets the new model.
2. The new model is scored on the validation tokens (outside the lock: it is the slow,
   independent part).
3. Under the target's own lock (``.<name>.rnnlm.lock`` beside it, awaited up to
   ``LOCK_WAIT_SECONDS``), the model in place is read and scored *again*: another promoter
   may have replaced it meanwhile. Only a finite, strictly lower loss replaces it.
4. The new file is copied beside the target, given the target's mode (and owner where
   allowed), fsynced and renamed over it. A reader sees the old model or the new one.

So two promoters racing end with the better of the three models in place, whatever their
timing. A target that is not better is left untouched and :class:`NotPromotedError`
reports it (exit 3).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import stat
from typing import Callable

import numpy as np
import torch

from rnnlm_cli.files.atomic import atomic_open
from rnnlm_cli.config import TrainConfig
from rnnlm_cli.errors import LockedError, OutputError, TokenizerMismatchError
from rnnlm_cli.files.locks import hold_lock, target_lock_path
from rnnlm_cli.units import perplexity

LOCK_WAIT_SECONDS = 600.0
"""How long a promoter waits for another one to finish with the same target."""


def resolve_target(target: str) -> str:
    """The file promotion replaces: the target with every symlink resolved.

    A link is followed only when it is ours or its folder owner's (the rule of Linux's
    ``fs.protected_symlinks``): in a folder others may write to, a link someone else
    planted could aim the replacement at any file.
    """
    path = os.path.abspath(target)
    for _ in range(40):  # the kernel's own limit on links in a row
        try:
            link = os.lstat(path)
        except FileNotFoundError:
            break
        if not stat.S_ISLNK(link.st_mode):
            break
        folder = os.path.dirname(path)
        if link.st_uid not in (os.geteuid(), os.stat(folder).st_uid):
            raise OutputError(f"{target}: the symbolic link {path} belongs to another user; "
                              "refusing to replace what it points to")
        path = os.path.join(folder, os.readlink(path))
    return os.path.realpath(path)


def check_promotable(target: str, tokenizer) -> None:
    """Refuse early when the model in place cannot be compared with the new one."""
    from rnnlm_cli.store.checkpoint import load_checkpoint
    from rnnlm_cli.text.tokenizers import fingerprint, tokenizer_from_dict

    target = resolve_target(target)
    if not os.path.exists(target):
        return
    current = tokenizer_from_dict(load_checkpoint(target).tokenizer)
    if fingerprint(current) != fingerprint(tokenizer):
        raise TokenizerMismatchError(
            f"{target}: the model in place uses another tokenizer, so scores cannot be compared; "
            "train with --init-from it (or --tokenizer it)")


def promote_if_better(candidate: str, target: str, valid: np.ndarray, config: TrainConfig,
                      device: torch.device, note: Callable[[str], None] | None = None,
                      wait_seconds: float = LOCK_WAIT_SECONDS,
                      should_stop: Callable[[], bool] = lambda: False) -> tuple[bool | None, str]:
    """Copy ``candidate`` over ``target`` if it validates better; ``(promoted, what happened)``.

    ``should_stop`` is asked between the steps (and while awaiting the lock): when it says
    yes the target is left as it is and ``promoted`` is None.
    """
    from rnnlm_cli.store.checkpoint import load_model
    from rnnlm_cli.train.validation import stream_loss

    named, target = target, resolve_target(target)
    new_model, new_tokenizer, _ = load_model(candidate, device)
    new_loss = stream_loss(new_model, valid, config.eval_batch_size, config.bptt, device)
    del new_model
    if not math.isfinite(new_loss):
        return False, f"not promoted: the new model's valid loss is not finite; {named} is unchanged"
    stopped = (None, f"not promoted: stopped before {named} was replaced; it is unchanged")
    if should_stop():
        return stopped
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)  # a first promotion may create the folder
    except OSError as exc:
        raise OutputError(f"{named}: cannot create its folder ({exc.strerror})") from exc
    try:
        with hold_lock(target_lock_path(target), f"the promotion target {named}", wait_seconds, note, should_stop):
            if should_stop():
                return stopped
            return _replace_if_better(candidate, target, named, new_loss, new_tokenizer, valid, config, device,
                                      should_stop) or stopped
    except LockedError:
        if should_stop():  # the wait for the lock was cut short by a signal
            return stopped
        raise


def _replace_if_better(candidate: str, target: str, named: str, new_loss: float, new_tokenizer, valid,
                       config: TrainConfig, device, should_stop) -> tuple[bool, str] | None:
    """Under the target's lock: score what is in place now, replace it if beaten; None if stopped."""
    from rnnlm_cli.store.checkpoint import load_model
    from rnnlm_cli.train.validation import stream_loss
    from rnnlm_cli.text.tokenizers import fingerprint

    if not os.path.exists(target):
        _replace_keeping_mode(candidate, target)
        return True, f"promoted: {named} did not exist; new model valid ppl {perplexity(new_loss):.3f}"
    old_model, old_tokenizer, _ = load_model(target, device)
    if fingerprint(old_tokenizer) != fingerprint(new_tokenizer):
        raise TokenizerMismatchError(f"{named}: the model in place now uses another tokenizer; {named} is unchanged")
    old_loss = stream_loss(old_model, valid, config.eval_batch_size, config.bptt, device)
    del old_model
    if should_stop():
        return None
    if not new_loss < old_loss:
        return False, (f"not promoted: new model valid ppl {perplexity(new_loss):.3f} is not better than "
                       f"{named}'s {perplexity(old_loss):.3f}; {named} is unchanged")
    _replace_keeping_mode(candidate, target)
    return True, f"promoted: valid ppl {perplexity(old_loss):.3f} -> {perplexity(new_loss):.3f}; {named} replaced"


def _replace_keeping_mode(candidate: str, target: str) -> None:
    try:
        before = os.stat(target)
    except FileNotFoundError:
        before = None
    with open(candidate, "rb") as source, atomic_open(target, "wb") as sink:
        shutil.copyfileobj(source, sink, 1 << 20)
        if before is not None:
            os.fchmod(sink.fileno(), stat.S_IMODE(before.st_mode))
            with contextlib.suppress(PermissionError):  # only root may give a file away
                os.fchown(sink.fileno(), before.st_uid, before.st_gid)
