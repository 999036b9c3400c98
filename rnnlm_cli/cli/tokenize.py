"""rnnlm tokenize: learn a tokenizer, encode a corpus into a token file, print or decode ids."""

from __future__ import annotations

import contextlib
import sys
from typing import Optional

import typer

from rnnlm_cli.cli.options import choices, switch, with_default
from rnnlm_cli.cli.ui import log, warn
from rnnlm_cli.config import SP_MODEL_TYPES, TOKENIZER_KINDS, TokenizerConfig

NAME = "tokenize"
SUMMARY = "Learn a tokenizer; encode text into a token file, ids or pieces; decode ids."
HELP = (
    "Learn a tokenizer from CORPUS (text, .gz text, or '-' for stdin) and encode it: into a "
    "binary token file that 'train' and 'eval' stream from disk (--out), as ids or pieces "
    "on stdout (--print), or save the tokenizer alone (--save-tokenizer). With --decode, "
    "CORPUS holds lines of ids and the text is printed. Word and char vocabularies are "
    "learned in the same single pass that encodes the text."
)
EPILOG = (
    "Examples:\n\n"
    "  rnnlm tokenize corpus.txt --kind word --min-count 2 --out corpus.tok\n\n"
    "  rnnlm tokenize corpus.txt.gz --kind sentencepiece --sp-model bpe --vocab-size 8000 --out corpus.tok --save-tokenizer sp.json\n\n"
    "  rnnlm tokenize corpus.txt --symbols data/lang/words.txt --out corpus.tok --save-tokenizer words.json\n\n"
    "  echo \"the dogs run .\" | rnnlm tokenize - --tokenizer model.pt --print ids | rnnlm tokenize - --tokenizer model.pt --decode"
)


def command(
    corpus: str = typer.Argument(..., help="Text to learn from and encode (plain or .gz), or '-' for stdin."),
    kind: Optional[str] = typer.Option(None, metavar=choices(*TOKENIZER_KINDS), help=with_default(
        "Tokenizer to learn: word, char, byte or sentencepiece", TokenizerConfig, "kind")),
    tokenizer: Optional[str] = typer.Option(None, metavar="FILE", help="Use this tokenizer (JSON, model or token file) instead of learning one."),
    symbols: Optional[str] = typer.Option(None, "--symbols", metavar="FILE", help=(
        "Use a recogniser's vocabulary instead of learning one: a Kaldi symbol table ('word id' lines, "
        "words.txt) or an ESPnet token list (one token per line, id = line number). Its words keep their "
        "order; <eos> is 0 and <unk> 1 as in every vocabulary; <eps>, <s>, </s>, #N, <blank> and <sos/eos> "
        "are not words. The table must be UTF-8, and is kept in the tokenizer: 'rnnlm export --format symbols' "
        "writes it back byte for byte.")),
    out: Optional[str] = typer.Option(None, "--out", "-o", metavar="FILE", help="Write the binary token file here."),
    save_tokenizer: Optional[str] = typer.Option(None, metavar="FILE", help="Write the tokenizer as JSON here."),
    print_as: Optional[str] = typer.Option(None, "--print", help="Print each line as 'ids' or 'pieces' to stdout."),
    decode: bool = switch(False, "--decode", help="CORPUS holds lines of ids: print them as text."),
    min_count: Optional[int] = typer.Option(None, help=with_default(
        "word/char: entries seen fewer times become <unk>", TokenizerConfig, "min_count")),
    max_size: Optional[int] = typer.Option(None, help=with_default(
        "word/char: largest vocabulary, specials included; 0 = no limit", TokenizerConfig, "max_size")),
    vocab_size: Optional[int] = typer.Option(None, help=with_default("sentencepiece: vocabulary size", TokenizerConfig, "vocab_size")),
    model_type: Optional[str] = typer.Option(None, "--sp-model", metavar=choices(*SP_MODEL_TYPES), help=with_default("sentencepiece: bpe or unigram", TokenizerConfig, "model_type")),
    strict: bool = switch(False, "--strict", help="Refuse invalid UTF-8 instead of replacing it."),
) -> None:
    from rnnlm_cli.text.corpus import learn_tokenizer
    from rnnlm_cli.errors import UsageError
    from rnnlm_cli.store.tokenizer_sources import tokenizer_from_file
    from rnnlm_cli.text.tokenizers import tokenizer_from_table
    from rnnlm_cli.text.reading import check_readable

    if print_as not in (None, "ids", "pieces"):
        raise UsageError(f"--print must be 'ids' or 'pieces', got {print_as!r}")
    if symbols is not None and tokenizer is not None:
        raise UsageError("--symbols and --tokenizer each give the tokenizer: pick one")
    _check_files(corpus, "--symbols" if symbols else "--tokenizer", tokenizer or symbols, out, save_tokenizer)
    if decode:
        if tokenizer is None and symbols is None:
            raise UsageError("--decode needs --tokenizer (a tokenizer JSON, model or token file) or --symbols")
        from rnnlm_cli.text.token_lines import decode_lines

        decode_lines(tokenizer_from_file(tokenizer) if tokenizer else tokenizer_from_table(symbols),
                     corpus, sys.stdout, strict=strict)
        return
    if not (out or save_tokenizer or print_as):
        raise UsageError("nothing to do: give --out, --print, --save-tokenizer or --decode")
    learning = {"kind": kind, "min_count": min_count, "max_size": max_size, "vocab_size": vocab_size,
                "model_type": model_type}
    if (tokenizer or symbols) is not None and any(v is not None for v in learning.values()):
        given_options = ", ".join("--" + k.replace("_", "-") for k, v in learning.items() if v is not None)
        source = "--tokenizer" if tokenizer else "--symbols"
        raise UsageError(f"{given_options} learn a tokenizer; with {source} there is nothing to learn")
    config = TokenizerConfig(**{k: v for k, v in learning.items() if v is not None})
    check_readable(corpus)
    given = (tokenizer_from_file(tokenizer) if tokenizer else
             tokenizer_from_table(symbols) if symbols else None)
    if print_as and given is None and not out and corpus == "-":
        raise UsageError("printing from stdin needs --tokenizer, or --out to learn from it first")

    if out:
        tok = _encode(corpus, out, given, config, strict, print_as)
        _finish(tok, out, save_tokenizer, print_as, strict, reported=True, name=corpus)
        return
    if given is not None:
        _finish(given, corpus, save_tokenizer, print_as, strict, reported=False, name=corpus)
        return
    from rnnlm_cli.files.spool import spooled

    # Learning and then printing reads the text twice: a pipe is copied once first.
    with spooled(corpus) if print_as else contextlib.nullcontext(corpus) as readable:
        _finish(learn_tokenizer(readable, config, strict=strict), readable, save_tokenizer, print_as, strict,
                reported=False, name=corpus)


def _encode(corpus: str, out: str, given, config, strict: bool, print_as: str | None):
    """Encode ``corpus`` into the token file ``out`` (learning the tokenizer unless ``given``),
    report on it, and return the tokenizer."""
    from rnnlm_cli.text.corpus import encode_corpus, input_warnings
    from rnnlm_cli.text.reading import display_name

    stats = encode_corpus(corpus, out, tokenizer=given, config=None if given else config, strict=strict)
    tok = stats.tokenizer
    _warn_all(input_warnings(display_name(corpus), invalid_lines=stats.invalid_lines,
                             replaced_chars=stats.replaced_chars, control_chars=stats.control_chars,
                             literal_specials=stats.literal_specials))
    summary = (f"{out}: {stats.lines:,} lines, {stats.words:,} words, {stats.tokens:,} tokens "
               f"({tok.kind} tokenizer, {tok.vocab_size:,} entries)")
    # With --print the ids own stdout, so the summary goes with the logs.
    log(summary) if print_as else print(summary)
    return tok


def _finish(tok, source: str, save_tokenizer: str | None, print_as: str | None, strict: bool, reported: bool,
            name: str) -> None:
    """Save the tokenizer and print ``source`` (text, or the token file just written: no second reading)."""
    from rnnlm_cli.text.tokenizers import save_tokenizer as write_tokenizer

    if save_tokenizer:
        write_tokenizer(tok, save_tokenizer)
        log(f"tokenizer ({tok.kind}, {tok.vocab_size:,} entries) saved to {save_tokenizer}")
    if print_as:
        from rnnlm_cli.text.token_lines import print_lines

        notes = print_lines(tok, source, print_as, sys.stdout, strict=strict, name=name)
        if not reported:  # the encoding pass into --out has already reported on the text
            _warn_all(notes)


def _check_files(corpus: str, source_flag: str, source: str | None, out: str | None, save_tokenizer: str | None) -> None:
    """Outputs that can be written, and none of them an input, before anything is read."""
    from rnnlm_cli.files.roles import FileRole, check_file_roles, check_output_file

    for name, path in (("--out", out), ("--save-tokenizer", save_tokenizer)):
        if path is not None:
            check_output_file(path, name)
    check_file_roles([FileRole("CORPUS", corpus), FileRole(source_flag, source or ""),
                      FileRole("--out", out or "", writes=True),
                      FileRole("--save-tokenizer", save_tokenizer or "", writes=True)])


def _warn_all(notes: list[str]) -> None:
    for note in notes:
        warn(note)
