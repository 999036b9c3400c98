"""rnnlm tokenize: learn a tokenizer, encode a corpus into a token file, print or decode ids."""

from __future__ import annotations

import contextlib
import sys
from functools import partial
from typing import Any

import typer

from rnnlm_cli.cli.field_flags import FieldFlag, field_flags, field_help, given_options
from rnnlm_cli.cli.options import choices, default_of, render
from rnnlm_cli.cli.ui import log, warn
from rnnlm_cli.config import SP_MODEL_TYPES, TOKENIZER_KINDS, TokenizerConfig
from rnnlm_cli.text.tokenize_request import TokenizeRequest

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
    "  echo \"the dogs run .\" | rnnlm tokenize - --tokenizer model.pt --print ids | rnnlm tokenize - --tokenizer model.pt --decode\n\n"
    "  rnnlm tokenize corpus.txt --kind word --reverse --out corpus.back.tok"
)


_request = partial(FieldFlag, TokenizeRequest)
"""A flag backed by a field of that class."""


def _learned(name: str) -> str:
    """The default a tokenizer learned from CORPUS takes for ``name``."""
    return render(default_of(TokenizerConfig, name))


# Every option, in the order --help lists them, each a field of TokenizeRequest (its docstrings
# are the help); the learning options show the defaults a learned tokenizer takes.
ORDER = (
    "corpus",
    _request("kind", metavar=choices(*TOKENIZER_KINDS), shown_default=_learned("kind")),
    _request("tokenizer", metavar="FILE"), _request("symbols", metavar="FILE"),
    _request("out", decls=("--out", "-o"), metavar="FILE"), _request("save_tokenizer", metavar="FILE"),
    _request("print_as", decls=("--print",), metavar="TEXT"), _request("decode"),
    *(_request(name, shown_default=_learned(name)) for name in ("min_count", "max_size", "vocab_size")),
    _request("model_type", decls=("--sp-model",), metavar=choices(*SP_MODEL_TYPES), shown_default=_learned("model_type")),
    _request("reverse"), _request("strict"),
)


@field_flags(*ORDER)
def command(
    corpus: str = typer.Argument(..., help=field_help(TokenizeRequest, "corpus") + "."),
    **options: Any,
) -> None:
    from rnnlm_cli.text.corpus import learn_tokenizer
    from rnnlm_cli.store.tokenizer_sources import tokenizer_from_file
    from rnnlm_cli.text.backward import directed
    from rnnlm_cli.text.tokenizers import tokenizer_from_table
    from rnnlm_cli.text.reading import check_readable

    request = TokenizeRequest(corpus, **given_options(options))
    _check_files(corpus, request.source_flag, request.source, request.out, request.save_tokenizer)
    tokenizer, symbols, strict, print_as = request.tokenizer, request.symbols, request.strict, request.print_as
    given = (tokenizer_from_file(tokenizer) if tokenizer else tokenizer_from_table(symbols) if symbols else None)
    if given is not None:
        given = directed(given, request.reverse)
    if request.decode:
        from rnnlm_cli.text.token_lines import decode_lines

        decode_lines(given, corpus, sys.stdout, strict=strict)
        return
    check_readable(corpus)
    if request.out:
        tok = _encode(corpus, request.out, given, request.learning, strict, print_as)
        _finish(tok, request.out, request.save_tokenizer, print_as, strict, reported=True, name=corpus)
        return
    if given is not None:
        _finish(given, corpus, request.save_tokenizer, print_as, strict, reported=False, name=corpus)
        return
    from rnnlm_cli.files.spool import spooled

    # Learning and then printing reads the text twice: a pipe is copied once first.
    with spooled(corpus) if print_as else contextlib.nullcontext(corpus) as readable:
        _finish(learn_tokenizer(readable, request.learning, strict=strict), readable, request.save_tokenizer,
                print_as, strict, reported=False, name=corpus)


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
    backward = ", each line read right to left" if tok.reverse else ""
    summary = (f"{out}: {stats.lines:,} lines, {stats.words:,} words, {stats.tokens:,} tokens "
               f"({tok.kind} tokenizer, {tok.vocab_size:,} entries{backward})")
    # With --print the ids own stdout, so the summary goes with the logs.
    log(summary) if print_as else print(summary)
    return tok


def _finish(tok, source: str, save_tokenizer: str | None, print_as: str | None, strict: bool, reported: bool,
            name: str) -> None:
    """Save the tokenizer and print ``source`` (text, or the token file just written: no second reading)."""
    from rnnlm_cli.text.tokenizers import save_tokenizer as write_tokenizer

    if save_tokenizer:
        write_tokenizer(tok, save_tokenizer)
        backward = ", each line read right to left" if tok.reverse else ""
        log(f"tokenizer ({tok.kind}, {tok.vocab_size:,} entries{backward}) saved to {save_tokenizer}")
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
