"""A recogniser's vocabulary as a word tokenizer: Kaldi symbol tables and ESPnet token lists.

Two layouts are read:

``kaldi``
    ``words.txt``: ``symbol id`` per line, ids unique non-negative integers (Kaldi's
    ``SymbolTable``). ``<eps>``, ``<s>``, ``</s>`` and ``#0`` are not words, nor are the
    grammar's ``#nonterm...`` symbols; these are what Kaldi reserves. ``utils/prepare_lang.sh``
    writes ``<eps>`` 0, the lexicon's words, then ``#0``, ``<s>`` and ``</s>``. Its word-level
    disambiguation symbol is ``#0`` alone: ``#1``, ``#2`` ... are phone-level, and extra word
    ones must not be numeric. ``utils/validate_dict_dir.pl`` refuses only ``<s>``, ``</s>``,
    ``<eps>`` and ``#0`` as lexicon words, so a word of text spelled ``#2`` ("stage #2") is a
    word.
``espnet``
    ``tokens.txt`` (an ESPnet ``token_list``): one token per line, its id the line number
    from 0. ``<blank>`` (CTC's blank) is not a token of text and ``<sos/eos>`` is the end of
    a sentence.

A table is read whole and strictly as UTF-8, and a tokenizer keeps its exact text when
writing its entries back would not give the same bytes (a byte-order mark, CRLF line ends,
tabs), so ``rnnlm export --format symbols`` returns the recogniser's file as it was.

The model keeps the project's own ids: ``<eos>`` 0 and ``<unk>`` 1 (the table's ``<unk>``,
or ``<sos/eos>``, becomes them), then the table's other words in the table's id order. The
table itself travels with the tokenizer (``WordTokenizer.symbols``), so the model can write
it back unchanged (:func:`write_symbol_table`) and a recogniser's ids still mean the same words.
"""

from __future__ import annotations

import gzip
import itertools
import re
import zlib
from typing import Any, Iterable, Iterator

from rnnlm_cli.errors import DataError
from rnnlm_cli.files.atomic import atomic_open
from rnnlm_cli.text.reading import MAX_LINE_BYTES, STDIN, display_name, natural, open_binary
from rnnlm_cli.text.tokenizer_base import EOS, SPECIALS

KALDI_NON_WORDS = frozenset({"<eps>", "<s>", "</s>", "#0"})
"""Symbols of a Kaldi table that are never words of a hypothesis (beside ``#nonterm...``)."""
_NONTERMINAL = "#nonterm"
ESPNET_BLANK = "<blank>"
ESPNET_EOS = "<sos/eos>"
_ID = re.compile(r"[0-9]+")
BOM = "\ufeff"


def is_kaldi_non_word(symbol: str) -> bool:
    """``<eps>``, ``<s>``, ``</s>``, the back-off symbol ``#0`` or a grammar's ``#nonterm...``."""
    return symbol in KALDI_NON_WORDS or symbol.startswith(_NONTERMINAL)


def read_symbol_table(path: str) -> tuple[str, list[tuple[str, int]]]:
    """``(layout, [(symbol, id), ...])`` of a Kaldi symbol table or an ESPnet token list, in file order."""
    layout, entries, _ = read_table(path)
    return layout, entries


def read_table(path: str) -> tuple[str, list[tuple[str, int]], str]:
    """The layout, the entries and the exact text of a table (a byte-order mark and CRLF line
    ends included, so that it can be written back byte for byte), read once, line by line: a
    file that is no table (binary data, a corpus given by mistake) is refused at its first bad
    line, before the rest is read.

    A table is always read strictly: a word with a replaced character would no longer be the
    recogniser's word, so invalid UTF-8 is bad data, with its line.
    """
    raw_lines: list[str] = []
    layout, entries = parse_symbol_lines(_table_lines(path, raw_lines), display_name(path))
    return layout, entries, "".join(raw_lines)


def _table_lines(path: str, raw_lines: list[str]) -> Iterator[str]:
    """Each line of the table without its line end (the first without a byte-order mark);
    ``raw_lines`` gets each line as written."""
    name = display_name(path)
    stream = open_binary(path)
    try:
        for number in itertools.count(1):
            raw = stream.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(f"{name}:{number}: a line of over {MAX_LINE_BYTES >> 20} MiB: not a symbol table")
            if b"\0" in raw:
                raise DataError(f"{name}:{number}: NUL byte: binary data, not a symbol table")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{name}:{number}: invalid UTF-8: a symbol table's words must be UTF-8 text, as "
                                "the recogniser writes them") from None
            raw_lines.append(line)
            yield (line.removeprefix(BOM) if number == 1 else line).rstrip("\r\n")
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{name}: damaged or truncated gzip data ({exc})") from None
    finally:
        if path != STDIN:
            stream.close()


def parse_symbol_table(text: str, name: str) -> tuple[str, list[tuple[str, int]]]:
    """The layout and entries of a table's whole text (as :func:`read_table` reads a file)."""
    return parse_symbol_lines(text.removeprefix(BOM).split("\n"), name)


def parse_symbol_lines(lines: Iterable[str], name: str) -> tuple[str, list[tuple[str, int]]]:
    """The layout and entries of a table's lines.

    The first line decides the layout: two fields, the second an integer, is Kaldi's; one
    field is ESPnet's. Ids and symbols must be unique; anything else is bad data, with its line.
    """
    layout: str | None = None
    entries: list[tuple[str, int]] = []
    ids: dict[int, str] = {}
    symbols: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{name}:{number}"
        if layout is None:
            layout = "espnet" if len(fields) == 1 else "kaldi"
        if layout == "kaldi":
            if len(fields) != 2 or not _ID.fullmatch(fields[1]):
                raise DataError(f"{where}: expected 'SYMBOL ID' (a Kaldi symbol table, as line 1), "
                                f"found {line.strip()[:80]!r}")
            symbol, symbol_id = fields[0], natural(fields[1], where, "the id")
        else:
            if len(fields) != 1:
                raise DataError(f"{where}: expected one token per line (an ESPnet token list, as line 1), "
                                f"found {len(fields)} fields")
            symbol, symbol_id = fields[0], len(entries)
        if symbol_id in ids:
            raise DataError(f"{where}: id {symbol_id} is given twice ({ids[symbol_id]!r} and {symbol!r})")
        if symbol in symbols:
            raise DataError(f"{where}: symbol {symbol!r} is given twice (ids {symbols[symbol]} and {symbol_id})")
        ids[symbol_id] = symbol
        symbols[symbol] = symbol_id
        entries.append((symbol, symbol_id))
    if layout is None:
        raise DataError(f"{name}: empty symbol table")
    return layout, entries


def check_stored_table(table: dict[str, Any], pieces: list[str], where: str) -> None:
    """A table kept in a tokenizer holds what reading its file would give: unique ids and
    symbols (ESPnet's numbered by line), the tokenizer's vocabulary, and, when its exact
    text is kept, the entries that text reads as. Otherwise DataError naming ``where``."""
    layout, entries = table["layout"], [tuple(entry) for entry in table["entries"]]
    text = table.get("text")
    if text is None:
        text = _plain_text(layout, entries)
    try:
        found = parse_symbol_table(text, "the stored table")
    except DataError as exc:
        raise DataError(f"{where}: its symbol table is not one rnnlm reads ({exc})") from None
    if found != (layout, entries):
        raise DataError(f"{where}: its symbol table's text and entries differ")
    if table_words(layout, entries) != pieces:
        raise DataError(f"{where}: its symbol table and its vocabulary differ")


def table_words(layout: str, entries: list[tuple[str, int]]) -> list[str]:
    """The word tokenizer's pieces: the project's specials, then the table's words by id."""
    def is_special(symbol: str) -> bool:
        if symbol in SPECIALS:
            return True
        if layout == "kaldi":
            return is_kaldi_non_word(symbol)
        return symbol in (ESPNET_BLANK, ESPNET_EOS)

    return [*SPECIALS, *(symbol for symbol, _ in sorted(entries, key=lambda e: e[1]) if not is_special(symbol))]


def symbol_lines(tokenizer) -> list[str]:
    """The lines of the tokenizer's table: the one it was built from, or a Kaldi ``words.txt``
    made from its vocabulary (``<eps>`` 0, its words from 1 in id order, ``<unk>`` among
    them, then ``#0``, ``<s>`` and ``</s>``, as Kaldi's ``prepare_lang.sh`` ends a table).
    Words Kaldi reserves (:func:`reserved_words`) are left out: in a recogniser they cannot be
    words, so they are ``<unk>`` to it."""
    if tokenizer.kind != "word":
        raise ValueError(f"a symbol table lists words: a {tokenizer.kind} tokenizer has none")
    table = getattr(tokenizer, "symbols", None)
    if table is not None:
        return _lines(table["layout"], table["entries"])
    words = [piece for piece in tokenizer.pieces if piece != EOS and not is_kaldi_non_word(piece)]
    symbols = ["<eps>", *words, "#0", "<s>", "</s>"]
    return [f"{symbol} {index}" for index, symbol in enumerate(symbols)]


def reserved_words(tokenizer) -> list[str]:
    """The words of a learned vocabulary that a Kaldi ``words.txt`` cannot hold as words
    (``#0``, ``<s>``, ``</s>``, ``<eps>``, ``#nonterm...``): :func:`symbol_lines` leaves them out."""
    if tokenizer.kind != "word" or getattr(tokenizer, "symbols", None) is not None:
        return []
    return [piece for piece in tokenizer.pieces if piece != EOS and is_kaldi_non_word(piece)]


def _lines(layout: str, entries) -> list[str]:
    if layout == "espnet":
        return [symbol for symbol, _ in entries]
    return [f"{symbol} {symbol_id}" for symbol, symbol_id in entries]


def _plain_text(layout: str, entries) -> str:
    """The table's text as its entries write it: one a line, LF line ends."""
    return "".join(line + "\n" for line in _lines(layout, entries))


def table_text(tokenizer) -> str:
    """The table as its file was, byte for byte when the tokenizer kept its text; otherwise
    :func:`symbol_lines`, one a line."""
    table = getattr(tokenizer, "symbols", None)
    if table is not None and table.get("text") is not None:
        return table["text"]
    return "".join(line + "\n" for line in symbol_lines(tokenizer))


def kept_text(text: str, layout: str, entries) -> str | None:
    """``text`` when writing the entries one a line would not give it back (a byte-order mark,
    CRLF, tabs, blank lines); None when it would, so most tables are kept once."""
    return None if text == _plain_text(layout, entries) else text


def write_symbol_table(tokenizer, path: str) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(table_text(tokenizer).encode("utf-8"))

