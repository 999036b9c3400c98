"""Word, char and byte tokenizers behind one small interface; sentencepiece lives beside.

Every tokenizer encodes one line of text without its line end; the end of a line is
the ``<eos>`` token (id 0), which decodes to ``"\\n"``. Ids:

* word: 0 ``<eos>``, 1 ``<unk>``, then words by descending count, ties alphabetical.
* char: 0 ``<eos>``, 1 ``<unk>``, then characters (spaces included) ordered the same way.
* byte: 0 ``<eos>``, then 1..256 for the byte values 0..255; nothing is unknown.
* sentencepiece: see :mod:`rnnlm_cli.text.sentencepiece_tokenizer`.

A tokenizer is data: :meth:`to_dict` gives JSON-safe content that
:func:`tokenizer_from_dict` rebuilds, and :func:`fingerprint` hashes it so a model and
a token file can be checked to belong together. Any of them reads each line right to left
for a backward model when its content says ``"reverse": true`` (:mod:`rnnlm_cli.text.backward`).
"""

from __future__ import annotations

import codecs
import hashlib
import json
from typing import Any, Iterable, Mapping, Sequence

from rnnlm_cli.files.atomic import atomic_open
from rnnlm_cli.errors import DataError, InputMissingError
from rnnlm_cli.text.backward import BackwardTokenizer
from rnnlm_cli.text.reading import display_name
from rnnlm_cli.text.symbol_tables import check_stored_table, kept_text, read_table, table_words
from rnnlm_cli.text.tokenizer_base import (EOS, EOS_ID, FORMAT_VERSION, SPECIALS, UNK, UNK_ID, EncodedLine,
                                          StreamingDecoder, Tokenizer, word_owners)

def build_vocab(counts: Mapping[str, int], min_count: int = 1, max_size: int = 0) -> list[str]:
    """The pieces of a word or char vocabulary: specials, then entries by count, ties alphabetical.

    ``max_size`` counts the two specials (0: no limit). ``counts`` must not hold the specials.
    """
    kept = [(entry, count) for entry, count in counts.items() if count >= min_count]
    kept.sort(key=lambda item: (-item[1], item[0]))
    if max_size:
        kept = kept[: max(max_size - len(SPECIALS), 0)]
    return [*SPECIALS, *(entry for entry, _ in kept)]


def _check_id(token_id: int, vocab_size: int) -> None:
    if not 0 <= token_id < vocab_size:
        raise DataError(f"token id {token_id} is outside the vocabulary of {vocab_size}")


class WordTokenizer:
    """Whitespace-separated words; anything else is ``<unk>``.

    A literal ``<eos>`` in the text is an unknown word (scored as ``<unk>``, counted as
    OOV), never the end-of-line id, so text can never fake a line break. A literal
    ``<unk>`` is in the vocabulary (WikiText writes rare words that way) and is not OOV.
    """

    kind = "word"
    eos_id = EOS_ID
    reverse = False
    unk_id: int | None = UNK_ID

    def __init__(self, pieces: Sequence[str], symbols: dict[str, Any] | None = None) -> None:
        self.pieces = list(pieces)
        self.vocab_size = len(self.pieces)
        self.index = {word: i for i, word in enumerate(self.pieces) if i != EOS_ID}
        self.symbols = symbols
        """The recogniser's table the vocabulary came from (:mod:`rnnlm_cli.text.symbol_tables`):
        ``{"layout": "kaldi"|"espnet", "entries": [[symbol, id], ...]}``, with ``"text"``, the
        file's exact text, when the entries alone would not write it back; None for a learned one."""

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], min_count: int = 1, max_size: int = 0) -> WordTokenizer:
        counts = {word: n for word, n in counts.items() if word not in SPECIALS}
        return cls(build_vocab(counts, min_count, max_size))

    def encode(self, line: str) -> list[int]:
        get = self.index.get
        return [get(word, UNK_ID) for word in line.split()]

    def encode_batch(self, lines: Sequence[str]) -> list[list[int]]:
        return [self.encode(line) for line in lines]

    def encode_line(self, line: str) -> EncodedLine:
        words = line.split()
        ids = self.encode(line)
        oov = [token == UNK_ID and word != UNK for word, token in zip(words, ids)]
        return EncodedLine(ids, list(range(len(words))), len(words), oov)

    def decode(self, ids: Iterable[int]) -> str:
        decoder = self.streaming_decoder()
        return "".join(decoder.push(token) for token in ids) + decoder.flush()

    def piece(self, token_id: int) -> str:
        _check_id(token_id, self.vocab_size)
        return self.pieces[token_id]

    def streaming_decoder(self) -> StreamingDecoder:
        return _WordDecoder(self)

    def to_dict(self) -> dict[str, Any]:
        data = {"kind": self.kind, "version": FORMAT_VERSION, "pieces": list(self.pieces)}
        if self.symbols is not None:
            # Only when present, so a learned tokenizer's fingerprint stays what it was.
            data["symbols"] = {"layout": self.symbols["layout"], "entries": [list(e) for e in self.symbols["entries"]]}
            if self.symbols.get("text") is not None:
                data["symbols"]["text"] = self.symbols["text"]
        return data


class _WordDecoder:
    def __init__(self, tokenizer: WordTokenizer) -> None:
        self._tokenizer = tokenizer
        self._after_word = False

    def push(self, token_id: int) -> str:
        if token_id == EOS_ID:
            self._after_word = False
            return "\n"
        word = self._tokenizer.piece(token_id)
        text = " " + word if self._after_word else word
        self._after_word = True
        return text

    def flush(self) -> str:
        return ""


class CharTokenizer:
    """Unicode characters, spaces included; ``<unk>`` decodes to U+FFFD, the replacement character."""

    kind = "char"
    eos_id = EOS_ID
    reverse = False
    unk_id: int | None = UNK_ID

    def __init__(self, pieces: Sequence[str]) -> None:
        self.pieces = list(pieces)
        self.vocab_size = len(self.pieces)
        self.index = {char: i for i, char in enumerate(self.pieces) if i >= len(SPECIALS)}

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], min_count: int = 1, max_size: int = 0) -> CharTokenizer:
        return cls(build_vocab(counts, min_count, max_size))

    def encode(self, line: str) -> list[int]:
        get = self.index.get
        return [get(char, UNK_ID) for char in line]

    def encode_batch(self, lines: Sequence[str]) -> list[list[int]]:
        return [self.encode(line) for line in lines]

    def encode_line(self, line: str) -> EncodedLine:
        owners, words = word_owners(line)
        return EncodedLine(self.encode(line), owners, words, [False] * words)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self._text(token) for token in ids)

    def piece(self, token_id: int) -> str:
        _check_id(token_id, self.vocab_size)
        return self.pieces[token_id]

    def _text(self, token_id: int) -> str:
        if token_id == EOS_ID:
            return "\n"
        if token_id == UNK_ID:
            return "\ufffd"
        return self.piece(token_id)

    def streaming_decoder(self) -> StreamingDecoder:
        return _CharDecoder(self)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": FORMAT_VERSION, "pieces": list(self.pieces)}


class _CharDecoder:
    def __init__(self, tokenizer: CharTokenizer) -> None:
        self._tokenizer = tokenizer

    def push(self, token_id: int) -> str:
        return self._tokenizer._text(token_id)

    def flush(self) -> str:
        return ""


class ByteTokenizer:
    """UTF-8 bytes shifted by one so that 0 is ``<eos>``; needs no learning and knows every text."""

    kind = "byte"
    eos_id = EOS_ID
    reverse = False
    unk_id: int | None = None
    vocab_size = 257

    def encode(self, line: str) -> list[int]:
        # Text read from files never holds lone surrogates; any other str must not crash encoding.
        return [byte + 1 for byte in line.encode("utf-8", errors="replace")]

    def encode_batch(self, lines: Sequence[str]) -> list[list[int]]:
        return [self.encode(line) for line in lines]

    def encode_line(self, line: str) -> EncodedLine:
        owners, words = word_owners(line)
        word_index = [owner for char, owner in zip(line, owners)
                      for _ in range(len(char.encode("utf-8", errors="replace")))]
        return EncodedLine(self.encode(line), word_index, words, [False] * words)

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(self._byte(token) for token in ids).decode("utf-8", errors="replace")

    def piece(self, token_id: int) -> str:
        if token_id == EOS_ID:
            return EOS
        value = self._byte(token_id)
        return chr(value) if 0x21 <= value <= 0x7E else f"<0x{value:02X}>"

    def _byte(self, token_id: int) -> int:
        _check_id(token_id, self.vocab_size)
        return 0x0A if token_id == EOS_ID else token_id - 1

    def streaming_decoder(self) -> StreamingDecoder:
        return _ByteDecoder(self)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": FORMAT_VERSION}


class _ByteDecoder:
    """Holds back the start of a UTF-8 sequence until its last byte arrives."""

    def __init__(self, tokenizer: ByteTokenizer) -> None:
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(bytes((self._tokenizer._byte(token_id),)))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


def tokenizer_from_dict(data: Any) -> Tokenizer:
    """Rebuild a tokenizer from :meth:`Tokenizer.to_dict` output; DataError, one line, if it is not one.

    ``"reverse": true`` makes it read each line right to left (:mod:`rnnlm_cli.text.backward`);
    a description without the key, as every one written before the option, reads left to right."""
    if not isinstance(data, dict) or "kind" not in data:
        raise DataError("not a tokenizer description (expected a JSON object with a 'kind')")
    reverse = data.get("reverse", False)
    if type(reverse) is not bool:
        raise DataError(f"tokenizer 'reverse' must be true or false, got {_brief(reverse)}")
    forward = _forward_from_dict(data)
    return BackwardTokenizer(forward) if reverse else forward


def _forward_from_dict(data: dict[str, Any]) -> Tokenizer:
    version = data.get("version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise DataError(f"tokenizer format version {_brief(version)} is not supported (expected {FORMAT_VERSION}); "
                        "re-create it with `rnnlm tokenize`")
    kind = data["kind"]
    if not isinstance(kind, str):
        raise DataError(f"tokenizer 'kind' must be a string, got {_brief(kind)}")
    if kind == "byte":
        return ByteTokenizer()
    if kind in ("word", "char"):
        tokenizer = _vocab_tokenizer(kind, data.get("pieces"))
        if "symbols" in data:
            if kind != "word":
                raise DataError(f"{kind} tokenizer: only a word tokenizer carries a symbol table")
            tokenizer.symbols = _symbols(data["symbols"])
            check_stored_table(tokenizer.symbols, tokenizer.pieces, "word tokenizer")
        return tokenizer
    if kind == "sentencepiece":
        from rnnlm_cli.text.sentencepiece_tokenizer import SentencePieceTokenizer

        return SentencePieceTokenizer.from_dict(data)
    raise DataError(f"unknown tokenizer kind {_brief(kind)}")


def tokenizer_from_table(path: str) -> WordTokenizer:
    """A word tokenizer whose vocabulary is a recogniser's table (a Kaldi ``words.txt`` or an
    ESPnet token list), the table kept for export (:mod:`rnnlm_cli.text.symbol_tables`)."""
    layout, entries, text = read_table(path)
    pieces = table_words(layout, entries)
    if len(pieces) == len(SPECIALS):
        raise DataError(f"{display_name(path)}: the table holds no words, only special symbols")
    symbols = {"layout": layout, "entries": [list(e) for e in entries]}
    exact = kept_text(text, layout, entries)
    if exact is not None:
        symbols["text"] = exact
    return WordTokenizer(pieces, symbols=symbols)


def _brief(value: Any) -> str:
    """A value from a foreign file, short enough for a one-line message (and safe to format)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a huge integer"
    if not isinstance(value, (str, int, float)) and value is not None:
        return f"a {type(value).__name__}"  # the repr of a nested container may be huge or recurse
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _vocab_tokenizer(kind: str, pieces: Any) -> Tokenizer:
    if not isinstance(pieces, list) or not all(isinstance(p, str) for p in pieces):
        raise DataError(f"{kind} tokenizer: 'pieces' must be a list of strings")
    if pieces[: len(SPECIALS)] != list(SPECIALS):
        raise DataError(f"{kind} tokenizer: pieces must start with {EOS} and {UNK}")
    entries = pieces[len(SPECIALS):]
    if len(set(entries)) != len(entries) or set(entries) & set(SPECIALS):
        raise DataError(f"{kind} tokenizer: duplicate pieces")
    if not all(_is_unicode(p) for p in entries):
        # A lone surrogate (JSON allows "\ud800") cannot be written as UTF-8 again.
        raise DataError(f"{kind} tokenizer: pieces must be valid Unicode text")
    if kind == "char":
        if any(len(p) != 1 for p in entries):
            raise DataError("char tokenizer: every piece must be one character")
        return CharTokenizer(pieces)
    if any(not p or p.split() != [p] for p in entries):
        raise DataError("word tokenizer: pieces must be non-empty and hold no whitespace")
    return WordTokenizer(pieces)


def _symbols(table: Any) -> dict[str, Any]:
    """A stored recogniser table, checked as far as writing it back needs."""
    if (not isinstance(table, dict) or table.get("layout") not in ("kaldi", "espnet")
            or not isinstance(table.get("entries"), list)
            or not all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and _is_unicode(e[0])
                       and e[0].split() == [e[0]] and type(e[1]) is int and e[1] >= 0 for e in table["entries"])
            or not (table.get("text") is None or isinstance(table["text"], str) and _is_unicode(table["text"]))):
        raise DataError("word tokenizer: 'symbols' must be {\"layout\": \"kaldi\"|\"espnet\", "
                        "\"entries\": [[symbol, id], ...]} and an optional \"text\"")
    checked = {"layout": table["layout"], "entries": [list(e) for e in table["entries"]]}
    if table.get("text") is not None:
        checked["text"] = table["text"]
    return checked


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def canonical_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def fingerprint(tokenizer: Tokenizer) -> str:
    """Short hash of the tokenizer's content; equal fingerprints encode text identically. A
    symbol table's kept text (its byte-order mark, line ends) encodes nothing: left out."""
    data = tokenizer.to_dict()
    if isinstance(data.get("symbols"), dict) and "text" in data["symbols"]:
        data = {**data, "symbols": {key: value for key, value in data["symbols"].items() if key != "text"}}
    return hashlib.sha256(canonical_json(data).encode("ascii")).hexdigest()[:16]


def save_tokenizer(tokenizer: Tokenizer, path: str) -> None:
    with atomic_open(path, "w") as handle:
        json.dump(tokenizer.to_dict(), handle, ensure_ascii=False)
        handle.write("\n")


def load_tokenizer_file(path: str) -> Tokenizer:
    """Read a tokenizer JSON file written by :func:`save_tokenizer`; DataError when it is not one."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise InputMissingError(f"{path}: no such tokenizer file") from None
    except IsADirectoryError:
        raise InputMissingError(f"{path}: is a directory, expected a tokenizer file") from None
    except PermissionError:
        raise InputMissingError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InputMissingError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting or numbers
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a tokenizer file ({detail}); "
                        "create one with `rnnlm tokenize --save-tokenizer`") from exc
    try:
        return tokenizer_from_dict(data)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
