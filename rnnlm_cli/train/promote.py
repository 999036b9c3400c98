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

Two models of different vocabularies (``--grow-vocab``) are compared on the same events.
Each reads the validation text through its own vocabulary (a word it lacks is ``<unk>`` to
it), and every token is scored by both; the words only one vocabulary holds, and ``<unk>``,
are one event, "another word", whose probability is what each model gives all of them
together. Scoring each model on its own vocabulary would reward the smaller one: its
``<unk>`` gathers the mass of every word it lacks, and guessing it is easy (a vocabulary of
``<unk>`` alone scores perplexity 1). Scoring only the words both know would reward it too:
the larger model rightly keeps mass for the words the smaller one cannot name, and so gives
the shared words less.
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
ACROSS_VOCABULARIES = 10
"""What comparing models of two vocabularies costs, in validations: each model's whole
distribution at every token, not only its target's score. Measured on WikiText-2's test
text (245k tokens, 2 CPU threads), adaptive-softmax models of 31,551 and 23,042 entries:
34.0 s and 19.2 s, against 5.3 s for one validation of the first."""


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


def check_promotable(target: str, tokenizer) -> bool:
    """Refuse early when the model in place cannot be compared with the new one; whether it
    is compared across vocabularies (:data:`ACROSS_VOCABULARIES`)."""
    from rnnlm_cli.store.checkpoint import load_checkpoint
    from rnnlm_cli.text.backward import direction
    from rnnlm_cli.text.tokenizers import fingerprint, tokenizer_from_dict

    target = resolve_target(target)
    if not os.path.exists(target):
        return False
    current = tokenizer_from_dict(load_checkpoint(target).tokenizer)
    if fingerprint(current) == fingerprint(tokenizer):
        return False
    if current.reverse != tokenizer.reverse:
        # Both are scored on the new model's validation tokens, which run in its direction only.
        raise TokenizerMismatchError(f"{target}: the model in place reads each line {direction(current)}, the new "
                                     f"one {direction(tokenizer)}, so scores cannot be compared")
    if _comparable(current, tokenizer):
        return True
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
    from rnnlm_cli.train.validation import merged_loss_sum, stream_loss
    from rnnlm_cli.text.tokenizers import fingerprint

    if not os.path.exists(target):
        _replace_keeping_mode(candidate, target)
        return True, f"promoted: {named} did not exist; new model valid ppl {perplexity(new_loss):.3f}"
    old_model, old_tokenizer, _ = load_model(target, device)
    on = ""
    if fingerprint(old_tokenizer) == fingerprint(new_tokenizer):
        old_loss = stream_loss(old_model, valid, config.eval_batch_size, config.bptt, device)
    elif _comparable(old_tokenizer, new_tokenizer):
        old_valid, old_merged, new_merged = common_events(valid, new_tokenizer, old_tokenizer)
        old_loss = _mean(merged_loss_sum(old_model, old_valid, config.eval_batch_size, config.bptt, device,
                                         old_merged))
        new_model = load_model(candidate, device)[0]
        new_loss = _mean(merged_loss_sum(new_model, valid, config.eval_batch_size, config.bptt, device, new_merged))
        del new_model
        on = (f" over the events both vocabularies name ({old_tokenizer.vocab_size:,} and "
              f"{new_tokenizer.vocab_size:,} entries; the words of only one, with <unk>, as one)")
    else:
        raise TokenizerMismatchError(f"{named}: the model in place now uses another tokenizer; {named} is unchanged")
    del old_model
    if should_stop():
        return None
    if not new_loss < old_loss:
        return False, (f"not promoted: new model valid ppl {perplexity(new_loss):.3f} is not better than "
                       f"{named}'s {perplexity(old_loss):.3f}{on}; {named} is unchanged")
    _replace_keeping_mode(candidate, target)
    return True, f"promoted: valid ppl {perplexity(old_loss):.3f} -> {perplexity(new_loss):.3f}{on}; {named} replaced"


def _comparable(one, other) -> bool:
    """Whether two tokenizers' vocabularies can be matched entry by entry (word with word,
    char with char): then models of either are compared on the same events. A recogniser's
    symbol table is not: its ids are the recogniser's, and another vocabulary would break them."""
    return (one.kind == other.kind and one.kind in ("word", "char") and hasattr(one, "pieces")
            and hasattr(other, "pieces") and getattr(one, "symbols", None) is None
            and getattr(other, "symbols", None) is None)


def common_events(tokens: np.ndarray, tokenizer, other) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``tokens`` (ids of ``tokenizer``) as ``other`` reads them, and for each vocabulary the
    flags of the entries that are one event in the comparison: ``<unk>`` and every entry the
    other vocabulary lacks. ``(tokens for other, other's flags, tokenizer's flags)``. A word
    ``tokenizer`` reads as ``<unk>`` is ``<unk>`` to ``other`` as well: its text is gone."""
    from rnnlm_cli.text.tokenizers import EOS_ID, UNK_ID

    index = getattr(other, "index", {})
    lookup = np.array([index.get(piece, UNK_ID) for piece in tokenizer.pieces], dtype=np.int64)
    lookup[EOS_ID], lookup[UNK_ID] = EOS_ID, UNK_ID
    mine = lookup == UNK_ID
    mine[EOS_ID] = False
    known = set(tokenizer.pieces)
    theirs = np.array([piece not in known for piece in other.pieces], dtype=bool)
    theirs[EOS_ID], theirs[UNK_ID] = False, True
    return lookup[np.asarray(tokens, dtype=np.int64)], theirs, mine


def _mean(loss_sum: tuple[float, int]) -> float:
    total, count = loss_sum
    return total / max(count, 1)


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
