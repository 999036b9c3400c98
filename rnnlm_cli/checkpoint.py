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
gigabytes; see ``state_checks``), every weight finite, every shape the one the stored
config needs, and that config within the parameter cap (``sizing``), so a damaged,
foreign or hostile file is one clear error, never a crash or a huge allocation.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import pickle
import pickletools
import warnings
import zipfile
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from rnnlm_cli import __version__
from rnnlm_cli.atomic import atomic_open
from rnnlm_cli.config import ModelConfig, as_dict
from rnnlm_cli.errors import (CheckpointError, DataError, InputMissingError, RnnlmError, TokenizerMismatchError,
                              UsageError)
from rnnlm_cli.sizing import check_model_size, tensor_count
from rnnlm_cli.spool import spooled
from rnnlm_cli.state_checks import DamagedState, check_all_tensors
from rnnlm_cli.textio import check_readable

FORMAT = "rnnlm-checkpoint"
VERSION = 1

_ZIP_MAGIC = b"PK\x03\x04"
_TOKEN_FILE_MAGIC = b"RNNLMTOK"  # rnnlm_cli.tokenfile.MAGIC, kept here so loading a model needs no numpy
_HEAD_BYTES = 1 << 16
_JSON_LIMIT = 64 << 20
# The first pickle of torch's legacy (pre-zip) format: protocol 2, then this magic number.
_LEGACY_TORCH = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
# Opcodes that make the unpickler import a name, the first step of running code.
_IMPORTING_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "EXT1", "EXT2", "EXT4"})
# A serialized ONNX ModelProto starts with ir_version (field 1, a small varint) followed by
# another ModelProto field: producer_name, producer_version, domain, model_version,
# doc_string, graph, opset_import or metadata_props.
_ONNX_SECOND_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72})
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
_FROM_TRAIN = "models are written by `rnnlm train`"
_CODE_REFUSED = ("refused: the file holds objects that would run code when loaded "
                 "(not an rnnlm checkpoint, or a tampered one)")


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
    _refuse_other_formats(readable)
    try:
        with warnings.catch_warnings():
            # The safe loader warns about foreign pickle protocols before refusing them;
            # the refusal below is the one message the user needs.
            warnings.simplefilter("ignore")
            payload = torch.load(readable, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # The safe unpickler met a global it will not import, or an opcode torch.save never
        # writes (a pickle made elsewhere, or edited): either way, not one to trust.
        raise CheckpointError(f"{path}: {_CODE_REFUSED}") from exc
    except FileNotFoundError as exc:
        raise InputMissingError(f"{path}: no such file") from exc
    except Exception as exc:  # zip, storage and EOF errors all mean: not a readable file
        raise CheckpointError(f"{path}: not a readable rnnlm checkpoint (corrupt or truncated file)") from exc
    checkpoint = _check_payload(path, payload)
    _check_fit(path, checkpoint)
    check_model_size(checkpoint.model_config, max_params, path)
    return checkpoint


def _refuse_other_formats(path: str) -> None:
    """Raise CheckpointError, saying what the file is, unless it is a zip archive as torch writes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise InputMissingError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if head.startswith(_ZIP_MAGIC):
        _check_archive(path)
        return
    raise CheckpointError(f"{path}: {_describe(path, head, size)}")


def _check_archive(path: str) -> None:
    # torch.save stores its records uncompressed; a compressed member could inflate to any size.
    # A stored member's size is what the reader allocates for it: no member may claim more
    # bytes than the file holds after its header.
    try:
        size = os.path.getsize(path)
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except Exception as exc:  # zipfile raises many kinds of error on a damaged directory
        raise CheckpointError(f"{path}: not a readable rnnlm checkpoint (corrupt or truncated file)") from exc
    if any(info.compress_type != zipfile.ZIP_STORED for info in members):
        raise CheckpointError(f"{path}: not an rnnlm checkpoint (a zip archive with compressed members)")
    if any(info.file_size != info.compress_size or info.header_offset + info.file_size > size for info in members):
        raise CheckpointError(f"{path}: not a readable rnnlm checkpoint (a member claims more bytes than the file has)")


def _describe(path: str, head: bytes, size: int) -> str:
    """What a file that is not a torch zip archive is, as the end of an error message."""
    if not head:
        return f"the file is empty, not an rnnlm model ({_FROM_TRAIN})"
    if head.startswith(_TOKEN_FILE_MAGIC):
        return "is a token file, not a model; give it to `rnnlm train`"
    if head.startswith(b"\x1f\x8b"):
        return "is gzip-compressed, not an rnnlm model"
    if _is_safetensors(head, size):
        return "is a safetensors export; load the .pt model, or use it with safetensors tools"
    if len(head) > 3 and head[0] == 0x08 and 1 <= head[1] <= 0x7F and head[2] in _ONNX_SECOND_TAGS:
        return "is an ONNX export; load the .pt model, or run it with onnxruntime"
    if head.startswith(_LEGACY_TORCH):
        return f"is a PyTorch file in the legacy format, not an rnnlm model ({_FROM_TRAIN})"
    if head[:1] == b"\x80":
        if _pickle_imports(head):
            return _CODE_REFUSED
        return f"is a plain pickle file, not an rnnlm model ({_FROM_TRAIN})"
    text = _text_head(head, complete=len(head) == size)
    if text is None:
        return "not an rnnlm model (unknown format, or a damaged file)"
    if text.lstrip().startswith(("{", "[")) and size <= _JSON_LIMIT:
        data = _json_or_none(path)
        if isinstance(data, dict) and "kind" in data:
            return "is a tokenizer JSON file, not a model; give it to `--tokenizer`"
        if data is not None:
            return f"is a JSON file, not an rnnlm model ({_FROM_TRAIN})"
    return f"is a text file, not an rnnlm model ({_FROM_TRAIN})"


def _is_safetensors(head: bytes, size: int) -> bool:
    # 8 bytes little-endian header length, then that many bytes of JSON header.
    return len(head) > 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


def _pickle_imports(head: bytes) -> bool:
    """Whether the pickles at the start of ``head`` import a name; read, never executed."""
    stream = io.BytesIO(head)
    try:
        while stream.tell() < len(head):
            for opcode, _, _ in pickletools.genops(stream):
                if opcode.name in _IMPORTING_OPCODES:
                    return True
    except Exception:  # a damaged or cut pickle: what came before holds no import
        return False
    return False


def _text_head(head: bytes, complete: bool) -> str | None:
    """The head decoded, when it is UTF-8 text without control characters; else None."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return None
    text = text.removeprefix("\ufeff")
    if all(char.isprintable() or char in "\t\n\r\f\v" for char in text):
        return text
    return None


def _json_or_none(path: str) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return json.load(handle)
    except (OSError, ValueError, RecursionError):
        return None


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
    from rnnlm_cli.tokenizers import tokenizer_from_dict

    try:
        return tokenizer_from_dict(checkpoint.tokenizer)
    except DataError as exc:
        raise CheckpointError(f"{os.fspath(path)}: the tokenizer stored in the model is damaged ({exc})") from exc


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu", max_params: int = 0):
    """Load a checkpoint into a ready model in eval mode: ``(model, tokenizer, checkpoint)``.

    ``max_params`` caps the stored config's size as in :func:`load_checkpoint`."""
    from rnnlm_cli.models import build_model

    path = os.fspath(path)
    checkpoint = load_checkpoint(path, max_params)
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
    return model, tokenizer, checkpoint


def _check_fit(path: str, checkpoint: Checkpoint) -> None:
    """Every tensor the config needs, of its shape, and no other; checked before any memory is taken."""
    from rnnlm_cli.models import build_model

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
