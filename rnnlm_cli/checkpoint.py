"""The one checkpoint format: a dict of plain data and tensors, saved atomically.

A checkpoint holds everything needed to use a model without other files:

    {"format": "rnnlm-checkpoint", "version": 1,
     "model_config": {...ModelConfig...}, "tokenizer": {...Tokenizer.to_dict()...},
     "state_dict": {name: tensor}, "metrics": {...}, "train_config": {...},
     "rnnlm_version": "...", "torch_version": "...",
     optional "training_state": {"optimizer": ..., "progress": {...}}}

It is written with ``torch.save`` and read with ``torch.load(weights_only=True)``, whose
restricted unpickler accepts tensors and plain containers only: a file that would run
code when loaded is refused, and never retried with the unrestricted loader.
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from rnnlm_cli import __version__
from rnnlm_cli.atomic import atomic_path
from rnnlm_cli.config import ModelConfig, as_dict
from rnnlm_cli.errors import CheckpointError, InputMissingError, RnnlmError, TokenizerMismatchError
from rnnlm_cli.textio import check_readable

FORMAT = "rnnlm-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint, its contents checked."""

    model_config: ModelConfig
    tokenizer: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] | None = None


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    tokenizer_dict: dict[str, Any],
    *,
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
) -> None:
    """Write ``model`` and what is needed to use it to ``path``, atomically."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "rnnlm_version": __version__,
        "torch_version": str(torch.__version__),
        "model_config": as_dict(model.config),
        "tokenizer": tokenizer_dict,
        # Stored on the CPU so a GPU-trained model loads anywhere.
        "state_dict": {name: t.detach().cpu() for name, t in model.state_dict().items()},
        "metrics": metrics or {},
        "train_config": train_config or {},
    }
    if training_state is not None:
        payload["training_state"] = training_state
    # Saved through a file object: given a path, torch names the archive's inner folder
    # after the (temporary) file name.
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        torch.save(payload, handle)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and check a checkpoint without running any code stored in it."""
    path = os.fspath(path)
    check_readable(path)
    try:
        with warnings.catch_warnings():
            # The safe loader warns about foreign pickle protocols before refusing them;
            # the refusal below is the one message the user needs.
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused: the file holds objects that would run code when loaded "
            "(not an rnnlm checkpoint, or a tampered one)"
        ) from exc
    except FileNotFoundError as exc:
        raise InputMissingError(f"{path}: no such file") from exc
    except Exception as exc:  # zip, storage and EOF errors all mean: not a readable file
        raise CheckpointError(f"{path}: not a readable rnnlm checkpoint (corrupt or truncated file)") from exc
    return _check_payload(path, payload)


def _check_payload(path: str, payload: Any) -> Checkpoint:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an rnnlm checkpoint")
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this rnnlm reads "
            f"(version {VERSION}); upgrade rnnlm"
        )
    try:
        model_config = ModelConfig(**payload["model_config"])
        tokenizer = payload["tokenizer"]
        state_dict = payload["state_dict"]
    except (KeyError, TypeError, RnnlmError) as exc:
        raise CheckpointError(f"{path}: checkpoint is incomplete or damaged ({exc})") from exc
    if not isinstance(tokenizer, dict) or not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: checkpoint is incomplete or damaged")
    return Checkpoint(
        model_config=model_config,
        tokenizer=tokenizer,
        state_dict=state_dict,
        metrics=payload.get("metrics") or {},
        train_config=payload.get("train_config") or {},
        training_state=payload.get("training_state"),
    )


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu"):
    """Load a checkpoint into a ready model in eval mode: ``(model, tokenizer, checkpoint)``."""
    from rnnlm_cli.models import build_model
    from rnnlm_cli.tokenizers import tokenizer_from_dict

    checkpoint = load_checkpoint(path)
    tokenizer = tokenizer_from_dict(checkpoint.tokenizer)
    if tokenizer.vocab_size != checkpoint.model_config.vocab_size:
        raise TokenizerMismatchError(
            f"{path}: the tokenizer has {tokenizer.vocab_size} entries but the model "
            f"{checkpoint.model_config.vocab_size}"
        )
    model = build_model(checkpoint.model_config)
    try:
        model.load_state_dict(checkpoint.state_dict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the stored model config ({first})") from exc
    model.to(device).eval()
    return model, tokenizer, checkpoint
