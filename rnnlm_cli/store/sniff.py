"""What a file is, from its first bytes: a torch zip archive may be a checkpoint; anything else
(a token file, a tokenizer JSON, a safetensors or ONNX export, gzip, text, a pickle) is named
in the refusal, so a user who passes the wrong file learns which file it was.

Nothing here unpickles: a pickle's opcodes are read with ``pickletools`` to tell a plain one
from one that would import (and so run) code.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import pickletools
import zipfile
from typing import Any

from rnnlm_cli.errors import CheckpointError, InputMissingError

_ZIP_MAGIC = b"PK\x03\x04"
_TOKEN_FILE_MAGIC = b"RNNLMTOK"  # rnnlm_cli.text.tokenfile.MAGIC, kept here so loading a model needs no numpy
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
_FROM_TRAIN = "models are written by `rnnlm train`"
CODE_REFUSED = ("refused: the file holds objects that would run code when loaded "
                 "(not an rnnlm checkpoint, or a tampered one)")


def refuse_other_formats(path: str) -> None:
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
            return CODE_REFUSED
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
