"""The one checkpoint format: a dict of plain data and tensors, saved atomically.

A checkpoint holds everything needed to use a model without other files:

    {"format": "rnnlm-checkpoint", "version": 1,
     "model_config": {...ModelConfig...}, "tokenizer": {...Tokenizer.to_dict()...},
     "state_dict": {name: tensor}, "metrics": {...}, "train_config": {...},
     "rnnlm_version": "...", "torch_version": "...",
     optional "training_state": {"optimizer": ..., "progress": {...}}}

It is written with ``torch.save`` and read with ``torch.load(weights_only=True)``, whose
restricted unpickler accepts tensors and plain containers only: a file that would run
code when loaded is refused, and never retried with the unrestricted loader. Only zip
archives reach that loader; any other file is named for what it is (a token file, a
tokenizer JSON, a safetensors or ONNX export, text, a plain pickle) and refused. The
contents are checked before use: every tensor in the file, optimizer state included, a
dense tensor of its own (never an expanded view that some later operation would inflate to
gigabytes; see ``checks``), every weight finite, every shape the one the stored
config needs, and that config within the parameter cap (``sizing``), so a damaged,
foreign or hostile file is one clear error, never a crash or a huge allocation.
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from rnnlm_cli import __version__
from rnnlm_cli.files.atomic import atomic_open
from rnnlm_cli.config import as_dict
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.errors import (CheckpointError, DataError, InputMissingError, RnnlmError, TokenizerMismatchError,
                              UsageError)
from rnnlm_cli.models.sizing import check_model_size, tensor_count
from rnnlm_cli.files.spool import spooled
from rnnlm_cli.stored_checks import DamagedState, check_all_tensors
from rnnlm_cli.store.sniff import CODE_REFUSED, refuse_other_formats
from rnnlm_cli.text.reading import check_readable

FORMAT = "rnnlm-checkpoint"
VERSION = 1

_CONFIG_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}



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
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)


def load_checkpoint(path: str | os.PathLike, max_params: int = 0) -> Checkpoint:
    """Read and check a checkpoint without running any code stored in it.

    Refused with CheckpointError: files of other formats, damaged files, contents that are
    not a checkpoint of a version this rnnlm reads, tensors that are views rather than
    tensors of their own, weights that are not all finite or do not fit the stored config,
    and a config of more than ``max_params`` parameters (0: ``sizing.default_max_params``).
    """
    path = os.fspath(path)
    check_readable(path)
    # Telling formats apart reads the head and loading reads the file again: a model that
    # comes through a pipe is copied once first.
    with spooled(path) as readable:
        return _load_checked(readable, path, max_params)


def _load_checked(readable: str, path: str, max_params: int) -> Checkpoint:
    """Load the checkpoint in the regular file ``readable``; ``path`` names it in messages."""
    refuse_other_formats(readable)
    try:
        with warnings.catch_warnings():
            # The safe loader warns about foreign pickle protocols before refusing them;
            # the refusal below is the one message the user needs.
            warnings.simplefilter("ignore")
            payload = torch.load(readable, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # The safe unpickler met a global it will not import, or an opcode torch.save never
        # writes (a pickle made elsewhere, or edited): either way, not one to trust.
        raise CheckpointError(f"{path}: {CODE_REFUSED}") from exc
    except FileNotFoundError as exc:
        raise InputMissingError(f"{path}: no such file") from exc
    except Exception as exc:  # zip, storage and EOF errors all mean: not a readable file
        raise CheckpointError(f"{path}: not a readable rnnlm checkpoint (corrupt or truncated file)") from exc
    return checked_checkpoint(path, payload, max_params)


def checked_checkpoint(path: str, payload: Any, max_params: int = 0) -> Checkpoint:
    """``payload``, a checkpoint's dict as loaded (or an export's contents put in that shape),
    checked whole: every tensor dense, the config valid and within the parameter cap, every
    weight finite and of the shape the config needs. CheckpointError names the first fault.

    The one gate between bytes on disk and a model: checkpoints and safetensors exports
    (:func:`rnnlm_cli.store.export.load_safetensors`) both pass through it."""
    checkpoint = _check_payload(path, payload)
    _check_fit(path, checkpoint)
    check_model_size(checkpoint.model_config, max_params, path)
    return checkpoint


def _check_payload(path: str, payload: Any) -> Checkpoint:
    if not isinstance(payload, dict) or not isinstance(payload.get("format"), str) or payload["format"] != FORMAT:
        raise CheckpointError(f"{path}: not an rnnlm checkpoint")
    version = payload.get("version")
    if type(version) is not int or version < 1:
        raise CheckpointError(f"{path}: checkpoint is damaged (format version {_brief(version)})")
    if version > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this rnnlm reads "
            f"(version {VERSION}); upgrade rnnlm"
        )
    try:
        check_all_tensors(payload)  # metadata only: nothing below may touch a view's values first
    except DamagedState as exc:
        raise CheckpointError(f"{path}: checkpoint is damaged (tensor {exc.field} {exc.problem})") from None
    missing = [key for key in ("model_config", "tokenizer", "state_dict") if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is incomplete (no {', '.join(missing)})")
    model_config = _model_config(path, payload["model_config"])
    tokenizer = payload["tokenizer"]
    if not isinstance(tokenizer, dict):
        raise CheckpointError(f"{path}: checkpoint is damaged (the tokenizer is not a mapping)")
    optional = {key: payload.get(key) for key in ("metrics", "train_config", "training_state")}
    for key, value in optional.items():
        if value is not None and not isinstance(value, dict):
            raise CheckpointError(f"{path}: checkpoint is damaged ({key} is not a mapping)")
    return Checkpoint(
        model_config=model_config,
        tokenizer=tokenizer,
        state_dict=_check_weights(path, payload["state_dict"]),
        metrics=optional["metrics"] or {},
        train_config=optional["train_config"] or {},
        training_state=optional["training_state"],
    )


ADAPTIVE_DIV_BEFORE_0_3 = 4.0
"""The adaptive softmax's ``adaptive_div`` of checkpoints that do not record it (rnnlm 0.2 and earlier)."""


def _model_config(path: str, data: Any) -> ModelConfig:
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: checkpoint is damaged (the model config is not a mapping)")
    # Field types are strings under postponed annotations, classes otherwise.
    known = {f.name: _CONFIG_TYPES.get(getattr(f.type, "__name__", str(f.type))) for f in fields(ModelConfig)}
    for key, value in data.items():
        if not isinstance(key, str) or key not in known:
            raise CheckpointError(f"{path}: checkpoint is damaged (unknown model setting {_brief(key)})")
        types = known[key]
        # bool is an int to Python, but never a size.
        if types and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise CheckpointError(f"{path}: checkpoint is damaged (model setting {key} is a "
                                  f"{type(value).__name__}, expected {types[-1].__name__})")
    # A model saved before the setting existed was built with torch's div_value.
    data = {"adaptive_div": ADAPTIVE_DIV_BEFORE_0_3, **data}
    try:
        return ModelConfig(**data)
    except (TypeError, RnnlmError) as exc:
        raise CheckpointError(f"{path}: checkpoint is damaged ({_one_line(str(exc))})") from exc


def _check_weights(path: str, state_dict: Any) -> dict[str, torch.Tensor]:
    """Every entry a named, finite, floating-point tensor (already known dense: see check_all_tensors)."""
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: checkpoint is damaged (the weights are not a mapping)")
    for name, tensor in state_dict.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: checkpoint is damaged (weight {_brief(name)} is not a named tensor)")
        if tensor.device.type != "cpu" or tensor.layout != torch.strided or not tensor.is_floating_point():
            raise CheckpointError(f"{path}: checkpoint is damaged (tensor {_brief(name)} is "
                                  f"{tensor.dtype} on {tensor.device.type}, expected dense floating point)")
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: weights hold NaN or infinite values (tensor {_brief(name)})")
    return state_dict


def _brief(value: Any) -> str:
    """A value for a one-line message: printable names as they are, else a short, safe repr."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a huge integer"
    if not isinstance(value, (str, int, float)) and value is not None:
        return f"a {type(value).__name__}"  # the repr of a nested container may be huge or recurse
    text = value if isinstance(value, str) and value.isprintable() else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def stored_tokenizer(path: str | os.PathLike, checkpoint: Checkpoint):
    """The tokenizer a loaded checkpoint carries; CheckpointError when it is damaged."""
    from rnnlm_cli.text.tokenizers import tokenizer_from_dict

    try:
        return tokenizer_from_dict(checkpoint.tokenizer)
    except DataError as exc:
        raise CheckpointError(f"{os.fspath(path)}: the tokenizer stored in the model is damaged ({exc})") from exc


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu", max_params: int = 0):
    """Load a checkpoint into a ready model in eval mode: ``(model, tokenizer, checkpoint)``.

    ``max_params`` caps the stored config's size as in :func:`load_checkpoint`."""
    path = os.fspath(path)
    checkpoint = load_checkpoint(path, max_params)
    model, tokenizer = model_from_checkpoint(path, checkpoint, device)
    return model, tokenizer, checkpoint


def model_from_checkpoint(path: str, checkpoint: Checkpoint, device: torch.device | str = "cpu"):
    """The model (eval mode, on ``device``) and tokenizer of a checked checkpoint: ``(model, tokenizer)``."""
    from rnnlm_cli.models.lm import build_model

    tokenizer = stored_tokenizer(path, checkpoint)
    if tokenizer.vocab_size != checkpoint.model_config.vocab_size:
        raise TokenizerMismatchError(
            f"{path}: the tokenizer has {tokenizer.vocab_size} entries but the model "
            f"{checkpoint.model_config.vocab_size}"
        )
    model = build_model(checkpoint.model_config)
    try:
        model.load_state_dict(checkpoint.state_dict)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored model config ({_one_line(str(exc))})") from exc
    model.to(device).eval()
    return model, tokenizer


def _check_fit(path: str, checkpoint: Checkpoint) -> None:
    """Every tensor the config needs, of its shape, and no other; checked before any memory is taken."""
    from rnnlm_cli.models.lm import build_model

    config, weights = checkpoint.model_config, checkpoint.state_dict
    # Far more tensors than the file holds is known by counting: building even on the meta
    # device takes minutes for 65536 layers. Near misses are built and named below.
    if tensor_count(config) > 2 * len(weights):
        raise CheckpointError(f"{path}: weights do not fit the stored model config "
                              f"({config.layers} layers need {tensor_count(config)} tensors, the file has {len(weights)})")
    try:
        with torch.device("meta"):  # shapes without storage
            expected = build_model(config).state_dict()
    except UsageError as exc:  # a setting valid alone but not with the rest (adaptive cutoffs)
        raise CheckpointError(f"{path}: checkpoint is damaged ({_one_line(str(exc))})") from exc
    problems = [f"missing tensor {name}" for name in expected if name not in weights]
    problems += [f"unexpected tensor {_brief(name)}" for name in weights if name not in expected]
    problems += [f"tensor {name} has shape {tuple(weights[name].shape)}, the config needs {tuple(want.shape)}"
                 for name, want in expected.items() if name in weights and weights[name].shape != want.shape]
    if problems:
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise CheckpointError(f"{path}: weights do not fit the stored model config ({problems[0]}{more})")
