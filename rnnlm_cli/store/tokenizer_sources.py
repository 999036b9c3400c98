"""Finding the tokenizer a user names: a kind to learn, or a file that holds one."""

from __future__ import annotations

import os

from rnnlm_cli.config import TOKENIZER_KINDS
from rnnlm_cli.errors import DataError, InputMissingError
from rnnlm_cli.text.reading import STDIN, display_name

_ZIP_MAGIC = b"PK\x03\x04"
_UTF8_BOM = b"\xef\xbb\xbf"


def tokenizer_from_file(path: str):
    """The tokenizer stored in a tokenizer JSON file, a token file or a model checkpoint.

    A pipe or stdin is copied once to a temporary file first (:mod:`rnnlm_cli.files.spool`):
    telling the formats apart reads the head, and loading reads the file again.
    """
    from rnnlm_cli.files.spool import spooled

    if path != STDIN and os.path.isdir(path):
        raise InputMissingError(f"{path}: is a directory, expected a tokenizer, token file or model")
    if path != STDIN and not os.path.exists(path):
        raise InputMissingError(f"{path}: no such tokenizer file (or use one of: {', '.join(TOKENIZER_KINDS)})")
    with spooled(path) as readable:
        return _tokenizer_in(readable, display_name(path))


def _tokenizer_in(path: str, name: str):
    from rnnlm_cli.store.checkpoint import load_checkpoint, stored_tokenizer
    from rnnlm_cli.text.tokenfile import MAGIC, open_token_file
    from rnnlm_cli.text.tokenizers import load_tokenizer_file

    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise InputMissingError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if head.startswith(MAGIC):
        return open_token_file(path).tokenizer
    if head.startswith(_ZIP_MAGIC):
        return stored_tokenizer(path, load_checkpoint(path))
    if head.removeprefix(_UTF8_BOM).lstrip()[:1] in (b"{", b"["):
        return load_tokenizer_file(path)
    raise DataError(f"{name}: not a tokenizer JSON file, token file or rnnlm model")


def tokenizer_to_learn(source: str) -> str | None:
    """The kind to learn when ``source`` names one, else None (it names a file)."""
    return source if source in TOKENIZER_KINDS else None
