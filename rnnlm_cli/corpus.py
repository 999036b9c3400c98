"""Text corpus -> token file, learning the tokenizer on the way when none is given.

Memory stays bounded by the vocabulary, never by the corpus: ids are written in chunks.
Word and char vocabularies are learned in the same single pass over the text that
encodes it: entries get provisional ids in first-seen order (written to a temporary file
beside the output) while they are counted; the final ids (by count) are then applied by
streaming that file through a lookup array. Sentencepiece must see a sample before it
can encode, so its text is read twice (stdin is first spooled to a temporary file).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from rnnlm_cli import __version__
from rnnlm_cli.atomic import TEMP_PREFIX
from rnnlm_cli.config import TokenizerConfig
from rnnlm_cli.errors import DataError, OutputError
from rnnlm_cli.sentencepiece_tokenizer import train_sentencepiece
from rnnlm_cli.textio import STDIN, DecodeStats, check_readable, display_name, iter_lines
from rnnlm_cli.tokenfile import TokenFileWriter, itemsize_for
from rnnlm_cli.tokenizers import (EOS, EOS_ID, UNK, UNK_ID, ByteTokenizer, CharTokenizer, Tokenizer,
                                  WordTokenizer, fingerprint)

CHUNK_IDS = 1 << 20
_BATCH_LINES = 4096


@dataclass
class CorpusStats:
    """What encoding a corpus found; ``tokens`` counts one ``<eos>`` per line."""

    lines: int
    words: int
    tokens: int
    invalid_lines: int
    replaced_chars: int
    tokenizer: Tokenizer
    oov_tokens: int | None = None
    """Word tokenizer only: words not in the vocabulary, scored as ``<unk>``."""


def encode_corpus(text_path: str, out_path: str, *, tokenizer: Tokenizer | None = None,
                  config: TokenizerConfig | None = None, strict: bool = False) -> CorpusStats:
    """Write the token file ``out_path`` for ``text_path`` (a file, a .gz file or "-").

    Give exactly one of ``tokenizer`` (encode with it) or ``config`` (learn one).
    """
    if (tokenizer is None) == (config is None):
        raise ValueError("give exactly one of tokenizer or config")
    check_readable(text_path)
    if config is not None and config.kind == "byte":
        tokenizer = ByteTokenizer()
    if tokenizer is not None:
        return _encode_with(tokenizer, text_path, out_path, strict)
    assert config is not None
    if config.kind in ("word", "char"):
        return _learn_and_encode(config, text_path, out_path, strict)
    with _spooled(text_path, out_path) as readable:
        sampled = DecodeStats()
        try:
            tokenizer = train_sentencepiece(iter_lines(readable, strict, sampled), config,
                                            source=display_name(text_path))
            return _encode_with(tokenizer, readable, out_path, strict, source=text_path)
        except DataError as exc:
            _check_not_empty(sampled.lines, text_path)
            if readable == text_path:
                raise
            # Messages about the spooled copy are about stdin.
            raise DataError(str(exc).replace(readable, display_name(text_path))) from exc


def learn_tokenizer(lines_path: str, config: TokenizerConfig, strict: bool = False) -> Tokenizer:
    """Learn a tokenizer from a text in one pass, without writing a token file."""
    check_readable(lines_path)
    if config.kind == "byte":
        return ByteTokenizer()
    read = DecodeStats()
    lines = iter_lines(lines_path, strict, read)
    if config.kind == "sentencepiece":
        try:
            return train_sentencepiece(lines, config, source=display_name(lines_path))
        except DataError:
            _check_not_empty(read.lines, lines_path)
            raise
    counts: dict[str, int] = {}
    for line in lines:
        for entry in (line.split() if config.kind == "word" else line):
            counts[entry] = counts.get(entry, 0) + 1
    _check_not_empty(read.lines, lines_path)
    builder = WordTokenizer if config.kind == "word" else CharTokenizer
    return builder.from_counts(counts, config.min_count, config.max_size)


def _encode_with(tokenizer: Tokenizer, text_path: str, out_path: str, strict: bool,
                 source: str | None = None) -> CorpusStats:
    """Encode ``text_path``; ``source`` names the text in messages when it was spooled."""
    source = text_path if source is None else source
    decode = DecodeStats()
    words = tokens = 0
    oov: int | None = 0 if tokenizer.kind == "word" else None
    with TokenFileWriter(out_path, itemsize_for(tokenizer.vocab_size)) as writer:
        buffer: list[int] = []
        for lines in _batches(iter_lines(text_path, strict, decode)):
            for line, ids in zip(lines, tokenizer.encode_batch(lines)):
                buffer.extend(ids)
                buffer.append(EOS_ID)
                if oov is None:
                    words += len(line.split())
                else:
                    words += len(ids)
                    if UNK_ID in ids:
                        # A literal <unk> in the text is a known word, not an OOV.
                        oov += ids.count(UNK_ID) - line.split().count(UNK)
            if len(buffer) >= CHUNK_IDS:
                writer.write(buffer)
                tokens += len(buffer)
                buffer = []
        writer.write(buffer)
        tokens += len(buffer)
        _check_not_empty(tokens, source)
        writer.close(_metadata(tokenizer, source, decode, words, tokens, oov))
    return CorpusStats(decode.lines, words, tokens, decode.invalid_lines, decode.replaced_chars, tokenizer, oov)


def _learn_and_encode(config: TokenizerConfig, text_path: str, out_path: str, strict: bool) -> CorpusStats:
    word_kind = config.kind == "word"
    # Provisional ids: 0 <eos>; for words 1 is a literal "<unk>" and 2 a literal "<eos>"
    # (an unknown word, see WordTokenizer); then entries in first-seen order.
    index: dict[str, int] = {UNK: 1, EOS: 2} if word_kind else {}
    counts = np.zeros(len(index) + 1, dtype=np.int64)
    decode = DecodeStats()
    words = 0
    with _temp_beside(out_path, ".ids") as provisional_path:
        with open(provisional_path, "wb") as provisional:
            buffer: list[int] = []
            lookup = index.setdefault
            for line in iter_lines(text_path, strict, decode):
                if word_kind:
                    entries = line.split()
                    words += len(entries)
                else:
                    entries = line  # type: ignore[assignment]
                    words += len(line.split())
                buffer.extend([lookup(entry, len(index) + 1) for entry in entries])
                buffer.append(EOS_ID)
                if len(buffer) >= CHUNK_IDS:
                    counts = _count_and_write(buffer, provisional, counts)
                    buffer = []
            counts = _count_and_write(buffer, provisional, counts)
        total = int(counts.sum())
        _check_not_empty(total, text_path)
        tokenizer, remap = _final_vocab(config, index, counts)
        # Literal "<unk>" words (provisional id 1) are in the vocabulary; every other
        # word that lands on <unk> is out of it.
        oov = int(counts[remap == UNK_ID].sum() - counts[1]) if word_kind else None
        with TokenFileWriter(out_path, itemsize_for(tokenizer.vocab_size)) as writer:
            with open(provisional_path, "rb") as provisional:
                while len(chunk := np.fromfile(provisional, dtype="<u4", count=CHUNK_IDS)):
                    writer.write(remap[chunk])
            writer.close(_metadata(tokenizer, text_path, decode, words, total, oov))
    return CorpusStats(decode.lines, words, total, decode.invalid_lines, decode.replaced_chars, tokenizer, oov)


def _count_and_write(buffer: list[int], handle: Any, counts: np.ndarray) -> np.ndarray:
    ids = np.array(buffer, dtype="<u4")
    ids.tofile(handle)
    found = np.bincount(ids)
    if len(found) > len(counts):
        counts = np.concatenate([counts, np.zeros(len(found) - len(counts), dtype=counts.dtype)])
    counts[: len(found)] += found
    return counts


def _final_vocab(config: TokenizerConfig, index: dict[str, int], counts: np.ndarray) -> tuple[Tokenizer, np.ndarray]:
    """The learned tokenizer and the array that maps provisional ids to its ids."""
    counts = np.concatenate([counts, np.zeros(len(index) + 1 - len(counts), dtype=counts.dtype)])
    first_entry = 3 if config.kind == "word" else 1
    entries = {entry: int(counts[pid]) for entry, pid in index.items() if pid >= first_entry}
    tokenizer: WordTokenizer | CharTokenizer
    if config.kind == "word":
        tokenizer = WordTokenizer.from_counts(entries, config.min_count, config.max_size)
    else:
        tokenizer = CharTokenizer.from_counts(entries, config.min_count, config.max_size)
    remap = np.full(len(index) + 1, UNK_ID, dtype=np.dtype(f"<u{itemsize_for(tokenizer.vocab_size)}"))
    remap[EOS_ID] = EOS_ID
    final = tokenizer.index
    for entry, pid in index.items():
        if pid >= first_entry:
            remap[pid] = final.get(entry, UNK_ID)
    return tokenizer, remap


def _batches(lines: Iterator[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= _BATCH_LINES:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_not_empty(tokens: int, text_path: str) -> None:
    if tokens == 0:
        raise DataError(f"{display_name(text_path)}: empty corpus")


def _metadata(tokenizer: Tokenizer, text_path: str, decode: DecodeStats, words: int, tokens: int,
              oov: int | None) -> dict[str, Any]:
    return {
        "tokenizer": tokenizer.to_dict(),
        "fingerprint": fingerprint(tokenizer),
        "source": "stdin" if text_path == STDIN else os.path.basename(text_path),
        "lines": decode.lines,
        "words": words,
        "tokens": tokens,
        "oov_tokens": oov,
        "invalid_lines": decode.invalid_lines,
        "replaced_chars": decode.replaced_chars,
        "rnnlm_version": __version__,
    }


@contextlib.contextmanager
def _temp_beside(out_path: str, suffix: str) -> Iterator[str]:
    """A temporary file in the output's folder (same disk, so no surprise about space), removed after."""
    folder = os.path.dirname(os.path.abspath(out_path))
    try:
        os.makedirs(folder, exist_ok=True)
        handle, path = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=folder)
    except OSError as exc:
        raise OutputError(f"{out_path}: cannot write ({exc.strerror})") from exc
    os.close(handle)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def _spooled(text_path: str, out_path: str) -> Iterator[str]:
    """A path that can be read twice: ``text_path`` itself, or stdin copied beside ``out_path``."""
    if text_path != STDIN:
        yield text_path
        return
    with _temp_beside(out_path, ".txt") as spool:
        with open(spool, "wb") as handle:
            shutil.copyfileobj(sys.stdin.buffer, handle, 1 << 20)
        yield spool
