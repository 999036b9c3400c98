"""Replacing the model users load only when a new one is better (cron retraining).

Both models are scored on the same validation tokens with the same batching; the new
one replaces the target atomically (copy to a temporary file beside it, fsync, rename)
only when its loss is lower. Otherwise the target is left untouched and
:class:`NotPromotedError` reports it (exit code 3).
"""

from __future__ import annotations

import math
import os
import shutil

import numpy as np
import torch

from rnnlm_cli.atomic import atomic_path
from rnnlm_cli.config import TrainConfig
from rnnlm_cli.errors import TokenizerMismatchError


def check_promotable(target: str, tokenizer) -> None:
    """Refuse early when the model in place cannot be compared with the new one."""
    from rnnlm_cli.checkpoint import load_checkpoint
    from rnnlm_cli.tokenizers import fingerprint, tokenizer_from_dict

    if not os.path.exists(target):
        return
    current = tokenizer_from_dict(load_checkpoint(target).tokenizer)
    if fingerprint(current) != fingerprint(tokenizer):
        raise TokenizerMismatchError(
            f"{target}: the model in place uses another tokenizer, so scores cannot be compared; "
            "train with --init-from it (or --tokenizer it)")


def promote_if_better(candidate: str, target: str, valid: np.ndarray, config: TrainConfig,
                      device: torch.device) -> tuple[bool, str]:
    """Copy ``candidate`` over ``target`` if it validates better; ``(promoted, what happened)``."""
    from rnnlm_cli.checkpoint import load_model
    from rnnlm_cli.evaluate import stream_loss

    new_model = load_model(candidate, device)[0]
    new_loss = stream_loss(new_model, valid, config.eval_batch_size, config.bptt, device)
    if os.path.exists(target):
        old_model = load_model(target, device)[0]
        old_loss = stream_loss(old_model, valid, config.eval_batch_size, config.bptt, device)
        if not (math.isfinite(new_loss) and new_loss < old_loss):
            return False, (f"not promoted: new model valid ppl {math.exp(new_loss):.3f} is not better than "
                           f"{target}'s {math.exp(old_loss):.3f}; {target} is unchanged")
        message = f"promoted: valid ppl {math.exp(old_loss):.3f} -> {math.exp(new_loss):.3f}; {target} replaced"
    else:
        message = f"promoted: {target} did not exist; new model valid ppl {math.exp(new_loss):.3f}"
    with atomic_path(target) as temp:
        shutil.copyfile(candidate, temp)
    return True, message
