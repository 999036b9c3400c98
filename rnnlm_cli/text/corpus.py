"""Text corpus -> token file, learning the tokenizer on the way when none is given.

Memory stays bounded by the vocabulary, never by the corpus: ids are written in chunks,
and a very long line is read in pieces (see :mod:`rnnlm_cli.text.reading`), encoded one after
the other with one ``<eos>`` after the last.
Word and char vocabularies are learned in the same single pass over the text that
encodes it: entries get provisional ids in first-seen order (written to a temporary file
beside the output) while they are counted; the final ids (by count) are then applied by
streaming that file through a lookup array. Sentencepiece must see a sample before it
can encode, so its text is read twice (stdin is first spooled to a temporary file).
A backward tokenizer (``TokenizerConfig.reverse``, :mod:`rnnlm_cli.text.backward`) is learned
as the forward one and writes each line's ids last first; it reads every line whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping

import numpy as np

from rnnlm_cli import __version__
from rnnlm_cli.files.atomic import WRITE_ERRORS, make_temp
from rnnlm_cli.config import TokenizerConfig
from rnnlm_cli.errors import DataError, OutputError
from rnnlm_cli.text.backward import directed, line_segments, whole_lines
from rnnlm_cli.text.sentencepiece_tokenizer import train_sentencepiece
from rnnlm_cli.text.reading import STDIN, DecodeStats, check_readable, display_name, iter_segments
from rnnlm_cli.files.spool import spooled
from rnnlm_cli.text.tokenfile import TokenFileWriter, itemsize_for
from rnnlm_cli.text.tokenizers import (EOS, EOS_ID, UNK, UNK_ID, ByteTokenizer, CharTokenizer, Tokenizer,
                                  WordTokenizer, fingerprint)

CHUNK_IDS = 1 << 18
_BATCH_PIECES = 4096
_BATCH_CHARS = 1 << 20


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
    oov_types: int | None = None
    """Word tokenizer only: distinct words among ``oov_tokens``."""
    control_chars: int = 0
    """C0 control characters other than TAB, and DEL, kept in the text as they are."""
    literal_specials: int = 0
    """Word tokenizer only: words spelled ``<eos>``, read as ``<unk>`` (text never fakes a line end).
    A word spelled ``<unk>`` is not counted: it is the unknown word, as corpora that wrote their
    rare words as ``<unk>`` (Penn Treebank, WikiText) mean it."""


def input_warnings(name: str, *, invalid_lines: int = 0, replaced_chars: int | None = None,
                   control_chars: int = 0, literal_specials: int = 0) -> list[str]:
    """One line for each kind of surprise found in the text ``name``, for commands to show as warnings."""
    notes = []
    if invalid_lines:
        replaced = f", {replaced_chars} character(s) replaced" if replaced_chars is not None else " replaced"
        notes.append(f"{name}: {invalid_lines} line(s) with invalid UTF-8{replaced} (use --strict to refuse)")
    if control_chars:
        notes.append(f"{name}: {control_chars} control character(s) (C0 other than tab, or DEL) kept as text")
    if literal_specials:
        notes.append(f"{name}: {literal_specials} word(s) spelled <eos> read as <unk> "
                     "(only a real line end is <eos>)")
    return notes


def count_literal_specials(text: str) -> int:
    """Words of ``text`` spelled ``<eos>`` (a word tokenizer reads them as ``<unk>``)."""
    if EOS not in text:
        return 0
    return text.split().count(EOS)


Choice = Callable[[Tokenizer, Mapping[str, int]], Tokenizer]
"""Given the tokenizer learned from a text and each entry's count there, the tokenizer to encode
the text with: the learned one, or another of the same kind (a model's own, kept)."""


def encode_corpus(text_path: str, out_path: str, *, tokenizer: Tokenizer | None = None,
                  config: TokenizerConfig | None = None, strict: bool = False,
                  name: str | None = None, choose: Choice | None = None) -> CorpusStats:
    """Write the token file ``out_path`` for ``text_path`` (a file, a .gz file, a pipe or "-").

    Give exactly one of ``tokenizer`` (encode with it) or ``config`` (learn one). ``name``
    is what the text is called in messages and the token file's ``source`` when
    ``text_path`` is a copy of it (default: ``text_path``). ``choose`` (word and char only)
    picks, once the entries are counted, the tokenizer to encode with: the text is still read
    once whichever it picks.
    """
    if (tokenizer is None) == (config is None):
        raise ValueError("give exactly one of tokenizer or config")
    check_readable(text_path)
    source = text_path if name is None else name
    if config is not None and config.kind == "byte":
        tokenizer = directed(ByteTokenizer(), config.reverse)
    if tokenizer is not None:
        return _encode_with(tokenizer, text_path, out_path, strict, source=source)
    assert config is not None
    if config.kind in ("word", "char"):
        return _learn_and_encode(config, text_path, out_path, strict, source=source, choose=choose)
    # Learning a sentencepiece model reads the text, encoding reads it again: a pipe is copied once.
    with spooled(text_path, os.path.dirname(os.path.abspath(out_path))) as readable:
        sampled = DecodeStats()
        try:
            # Pieces are learned from the text as written; a backward tokenizer reverses their order.
            tokenizer = directed(train_sentencepiece(_texts(iter_segments(readable, strict, sampled)), config,
                                                     source=display_name(source)), config.reverse)
        except DataError:
            _check_not_empty(sampled.lines, source)  # "empty" says more than the trainer's complaint
            raise
        return _encode_with(tokenizer, readable, out_path, strict, source=source)


def learn_tokenizer(lines_path: str, config: TokenizerConfig, strict: bool = False) -> Tokenizer:
    """Learn a tokenizer from a text in one pass, without writing a token file."""
    check_readable(lines_path)
    if config.kind == "byte":
        return directed(ByteTokenizer(), config.reverse)
    read = DecodeStats()
    texts = _texts(iter_segments(lines_path, strict, read))
    if config.kind == "sentencepiece":
        try:
            return directed(train_sentencepiece(texts, config, source=display_name(lines_path)), config.reverse)
        except DataError:
            _check_not_empty(read.lines, lines_path)
            raise
    counts: dict[str, int] = {}
    for text in texts:
        for entry in (text.split() if config.kind == "word" else text):
            counts[entry] = counts.get(entry, 0) + 1
    _check_not_empty(read.lines, lines_path)
    builder = WordTokenizer if config.kind == "word" else CharTokenizer
    return directed(builder.from_counts(counts, config.min_count, config.max_size), config.reverse)


def _encode_with(tokenizer: Tokenizer, text_path: str, out_path: str, strict: bool,
                 source: str | None = None) -> CorpusStats:
    """Encode ``text_path``; ``source`` names the text in messages when it was spooled."""
    source = text_path if source is None else source
    decode = DecodeStats()
    counted = _Counted(oov=0 if tokenizer.kind == "word" else None)
    tokens = 0
    with TokenFileWriter(out_path, itemsize_for(tokenizer.vocab_size)) as writer:
        buffer: list[int] = []
        for texts, ends in _batches(line_segments(tokenizer, iter_segments(text_path, strict, decode))):
            _encode_batch_into(buffer, tokenizer, texts, ends, counted)
            if len(buffer) >= CHUNK_IDS:
                tokens += _write_ids(writer, buffer)
                buffer = []
        tokens += _write_ids(writer, buffer)
        _check_not_empty(tokens, source)
        stats = _corpus_stats(decode, counted.words, tokens, tokenizer, counted.oov, counted.literal,
                              None if counted.oov is None else len(counted.oov_words))
        writer.close(_metadata(source, stats))
    return stats


@dataclass
class _Counted:
    words: int = 0
    oov: int | None = None
    literal: int = 0
    oov_words: set[str] = dataclasses.field(default_factory=set)
    """The distinct words counted in ``oov`` (bounded by the text's vocabulary, not its length)."""


def _encode_batch_into(buffer: list[int], tokenizer: Tokenizer, texts: list[str], ends: list[bool],
                       counted: _Counted) -> None:
    """Append the ids of a batch of pieces to ``buffer``, ``<eos>`` after each line's last piece.

    A function of its own so that a piece's ids and words are freed before the next batch
    is read: with pieces of a megabyte they are tens of megabytes of objects.
    """
    for text, ends_line, ids in zip(texts, ends, tokenizer.encode_batch(texts)):
        buffer.extend(ids)
        if ends_line:
            buffer.append(EOS_ID)
        if counted.oov is None:
            counted.words += len(text.split())
            continue
        counted.words += len(ids)
        if UNK_ID in ids:
            # A literal <unk> in the text is a known word, not an OOV; a literal <eos>
            # is not in the vocabulary.
            split = text.split()
            in_order = ids[::-1] if tokenizer.reverse else ids
            unknown = [word for word, token in zip(split, in_order) if token == UNK_ID and word != UNK]
            counted.oov += len(unknown)
            counted.oov_words.update(unknown)
            counted.literal += split.count(EOS)


def _learn_and_encode(config: TokenizerConfig, text_path: str, out_path: str, strict: bool,
                      source: str, choose: Choice | None = None) -> CorpusStats:
    word_kind = config.kind == "word"
    # Provisional ids: 0 <eos>; for words 1 is a literal "<unk>" and 2 a literal "<eos>"
    # (an unknown word, see WordTokenizer); then entries in first-seen order.
    index: dict[str, int] = {UNK: 1, EOS: 2} if word_kind else {}
    counts = np.zeros(len(index) + 1, dtype=np.int64)
    decode = DecodeStats()
    words = 0
    with _temp_beside(out_path, ".ids") as provisional:
        buffer: list[int] = []
        segments = iter_segments(text_path, strict, decode)
        for text, ends_line in whole_lines(segments) if config.reverse else segments:
            words += _provisional_into(buffer, text, index, word_kind, config.reverse)
            if ends_line:
                buffer.append(EOS_ID)
            if len(buffer) >= CHUNK_IDS:
                counts = _count_and_write(buffer, provisional, counts)
                buffer = []
        counts = _count_and_write(buffer, provisional, counts)
        total = int(counts.sum())
        _check_not_empty(total, source)
        tokenizer, remap = _final_vocab(config, index, counts, choose)
        # Literal "<unk>" words (provisional id 1) are in the vocabulary; every other
        # word that lands on <unk> is out of it.
        unknown = remap == UNK_ID
        unknown[:2] = False
        oov = int(counts[unknown].sum()) if word_kind else None
        types = int(np.count_nonzero(counts[unknown])) if word_kind else None
        literal = int(counts[2]) if word_kind else 0  # a literal <eos>; a literal <unk> means <unk>
        stats = _corpus_stats(decode, words, total, tokenizer, oov, literal, types)
        provisional.flush()
        provisional.seek(0)
        with TokenFileWriter(out_path, itemsize_for(tokenizer.vocab_size)) as writer:
            while len(chunk := np.fromfile(provisional, dtype="<u4", count=CHUNK_IDS)):
                writer.write(remap[chunk])
            writer.close(_metadata(source, stats))
    return stats


def _provisional_into(buffer: list[int], text: str, index: dict[str, int], word_kind: bool,
                      reverse: bool = False) -> int:
    """Append the provisional ids of ``text``'s words or characters (last first with
    ``reverse``: ``text`` is then a whole line); return its word count.

    The words of a long piece are freed on return, before the next piece is read.
    """
    words = text.split()
    lookup = index.setdefault
    ids = [lookup(entry, len(index) + 1) for entry in (words if word_kind else text)]
    buffer.extend(reversed(ids) if reverse else ids)
    return len(words)


def _corpus_stats(decode: DecodeStats, words: int, tokens: int, tokenizer: Tokenizer, oov: int | None,
                  literal: int, oov_types: int | None = None) -> CorpusStats:
    return CorpusStats(decode.lines, words, tokens, decode.invalid_lines, decode.replaced_chars, tokenizer,
                       oov, oov_types, decode.control_chars, literal)


def _write_ids(writer: TokenFileWriter, buffer: list[int]) -> int:
    # Converted straight to the file's type: no int64 copy of the chunk on the way.
    writer.write(np.array(buffer, dtype=np.uint32 if writer.itemsize == 4 else np.uint16))
    return len(buffer)


def _count_and_write(buffer: list[int], handle: Any, counts: np.ndarray) -> np.ndarray:
    ids = np.array(buffer, dtype="<u4")
    handle.write(ids.data)  # not ids.tofile: its OSError has no errno, so a full disk looks like a bug
    found = np.bincount(ids)
    if len(found) > len(counts):
        counts = np.concatenate([counts, np.zeros(len(found) - len(counts), dtype=counts.dtype)])
    counts[: len(found)] += found
    return counts


def _final_vocab(config: TokenizerConfig, index: dict[str, int], counts: np.ndarray,
                 choose: Choice | None = None) -> tuple[Tokenizer, np.ndarray]:
    """The learned tokenizer (or the one ``choose`` picks) and the array that maps provisional
    ids to its ids."""
    counts = np.concatenate([counts, np.zeros(len(index) + 1 - len(counts), dtype=counts.dtype)])
    first_entry = 3 if config.kind == "word" else 1
    entries = {entry: int(counts[pid]) for entry, pid in index.items() if pid >= first_entry}
    tokenizer: Tokenizer
    if config.kind == "word":
        tokenizer = WordTokenizer.from_counts(entries, config.min_count, config.max_size)
    else:
        tokenizer = CharTokenizer.from_counts(entries, config.min_count, config.max_size)
    if choose is not None:
        # The words spelled <unk> and <eos> count as words of the text too (the one known, the other not).
        tokenizer = choose(tokenizer, {**entries, UNK: int(counts[1]), EOS: int(counts[2])}
                           if config.kind == "word" else entries)
    tokenizer = directed(tokenizer, config.reverse)  # the ids were written in its direction
    remap = np.full(len(index) + 1, UNK_ID, dtype=np.dtype(f"<u{itemsize_for(tokenizer.vocab_size)}"))
    remap[EOS_ID] = EOS_ID
    final = tokenizer.index
    for entry, pid in index.items():
        if pid >= first_entry:
            remap[pid] = final.get(entry, UNK_ID)
    return tokenizer, remap


def _texts(segments: Iterable[tuple[str, bool]]) -> Iterator[str]:
    return (text for text, _ in segments)


def _batches(segments: Iterable[tuple[str, bool]]) -> Iterator[tuple[list[str], list[bool]]]:
    """Pieces of lines in batches for ``encode_batch``, bounded in count and in characters."""
    texts: list[str] = []
    ends: list[bool] = []
    size = 0
    for text, ends_line in segments:
        texts.append(text)
        ends.append(ends_line)
        size += len(text)
        if len(texts) >= _BATCH_PIECES or size >= _BATCH_CHARS:
            yield texts, ends
            texts, ends, size = [], [], 0
    if texts:
        yield texts, ends


def _check_not_empty(tokens: int, text_path: str) -> None:
    if tokens == 0:
        raise DataError(f"{display_name(text_path)}: empty corpus")


def _metadata(text_path: str, stats: CorpusStats) -> dict[str, Any]:
    return {
        "tokenizer": stats.tokenizer.to_dict(),
        "fingerprint": fingerprint(stats.tokenizer),
        "source": "stdin" if text_path == STDIN else os.path.basename(text_path),
        "lines": stats.lines,
        "words": stats.words,
        "tokens": stats.tokens,
        "oov_tokens": stats.oov_tokens,
        "invalid_lines": stats.invalid_lines,
        "replaced_chars": stats.replaced_chars,
        "control_chars": stats.control_chars,
        "literal_specials": stats.literal_specials,
        "rnnlm_version": __version__,
    }


@contextlib.contextmanager
def _temp_beside(out_path: str, suffix: str) -> Iterator[BinaryIO]:
    """A temporary file of ours in the output's folder (same disk, so no surprise about space),
    open for writing and reading back; removed after.

    Written through the descriptor mkstemp opened (O_EXCL, O_NOFOLLOW), never through the
    name, so a link swapped in by someone else is never written through.
    """
    folder = os.path.dirname(os.path.abspath(out_path))
    fd, path = make_temp(folder, suffix, for_path=out_path)
    try:
        with open(fd, "w+b") as handle:
            try:
                yield handle
            except OSError as exc:
                if exc.errno in WRITE_ERRORS:
                    raise OutputError(f"{out_path}: cannot write a temporary file beside it ({exc.strerror})") from exc
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
