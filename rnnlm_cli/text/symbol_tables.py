"""A recogniser's vocabulary as a word tokenizer: Kaldi symbol tables and ESPnet token lists.

Two layouts are read:

``kaldi``
    ``words.txt``: ``symbol id`` per line, ids unique non-negative integers (Kaldi's
    ``SymbolTable``). ``<eps>``, ``<s>``, ``</s>`` and the disambiguation symbols ``#0``,
    ``#1`` ... are not words.
``espnet``
    ``tokens.txt`` (an ESPnet ``token_list``): one token per line, its id the line number
    from 0. ``<blank>`` (CTC's blank) is not a token of text and ``<sos/eos>`` is the end of
    a sentence.

The model keeps the project's own ids: ``<eos>`` 0 and ``<unk>`` 1 (the table's ``<unk>``,
or ``<sos/eos>``, becomes them), then the table's other words in the table's id order. The
table itself travels with the tokenizer (``WordTokenizer.symbols``), so the model can write
it back unchanged (:func:`write_symbol_table`) and a recogniser's ids still mean the same words.
"""

from __future__ import annotations

import re

from rnnlm_cli.errors import DataError
from rnnlm_cli.files.atomic import atomic_open
from rnnlm_cli.text.reading import check_readable, display_name, iter_lines, natural
from rnnlm_cli.text.tokenizer_base import EOS, SPECIALS

KALDI_NON_WORDS = frozenset({"<eps>", "<s>", "</s>"})
"""Symbols of a Kaldi table that are never words of a hypothesis (beside ``#N``)."""
ESPNET_BLANK = "<blank>"
ESPNET_EOS = "<sos/eos>"
_DISAMBIGUATION = re.compile(r"#[0-9]+")
_ID = re.compile(r"[0-9]+")


def is_kaldi_non_word(symbol: str) -> bool:
    """``<eps>``, ``<s>``, ``</s>`` or a disambiguation symbol ``#N``."""
    return symbol in KALDI_NON_WORDS or bool(_DISAMBIGUATION.fullmatch(symbol))


def read_symbol_table(path: str, strict: bool = False) -> tuple[str, list[tuple[str, int]]]:
    """``(layout, [(symbol, id), ...])`` of a Kaldi symbol table or an ESPnet token list, in file order.

    The first line decides the layout: two fields, the second an integer, is Kaldi's; one
    field is ESPnet's. Ids and symbols must be unique; anything else is bad data, with its line.
    """
    check_readable(path)
    name = display_name(path)
    layout: str | None = None
    entries: list[tuple[str, int]] = []
    ids: dict[int, str] = {}
    symbols: dict[str, int] = {}
    for number, line in enumerate(iter_lines(path, strict), start=1):
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
    if not entries:
        raise DataError(f"{name}: empty symbol table")
    return layout, entries


def table_words(layout: str, entries: list[tuple[str, int]]) -> list[str]:
    """The word tokenizer's pieces: the project's specials, then the table's words by id."""
    def is_special(symbol: str) -> bool:
        if symbol in SPECIALS:
            return True
        if layout == "kaldi":
            return is_kaldi_non_word(symbol)
        return symbol in (ESPNET_BLANK, ESPNET_EOS)

    return [*SPECIALS, *(symbol for symbol, _ in sorted(entries, key=lambda e: e[1]) if not is_special(symbol))]


def tokenizer_from_table(path: str, strict: bool = False):
    """A word tokenizer whose vocabulary is the table's, the table kept for export."""
    from rnnlm_cli.text.tokenizers import WordTokenizer

    layout, entries = read_symbol_table(path, strict)
    pieces = table_words(layout, entries)
    if len(pieces) == len(SPECIALS):
        raise DataError(f"{display_name(path)}: the table holds no words, only special symbols")
    return WordTokenizer(pieces, symbols={"layout": layout, "entries": [list(e) for e in entries]})


def symbol_lines(tokenizer) -> list[str]:
    """The lines of the tokenizer's table: the one it was built from, or a Kaldi ``words.txt``
    made from its vocabulary (``<eps>`` 0, its words from 1 in id order, ``<unk>`` among
    them, then ``#0``, ``<s>`` and ``</s>``, as Kaldi's ``prepare_lang.sh`` ends a table)."""
    if tokenizer.kind != "word":
        raise ValueError(f"a symbol table lists words: a {tokenizer.kind} tokenizer has none")
    table = getattr(tokenizer, "symbols", None)
    if table is not None:
        if table["layout"] == "espnet":
            return [symbol for symbol, _ in table["entries"]]
        return [f"{symbol} {symbol_id}" for symbol, symbol_id in table["entries"]]
    words = [piece for piece in tokenizer.pieces if piece != EOS]
    symbols = ["<eps>", *words, "#0", "<s>", "</s>"]
    return [f"{symbol} {index}" for index, symbol in enumerate(symbols)]


def write_symbol_table(tokenizer, path: str) -> None:
    lines = symbol_lines(tokenizer)
    with atomic_open(path, "w") as handle:
        handle.write("".join(line + "\n" for line in lines))

