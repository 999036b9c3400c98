"""rnnlm tokenize: learn a tokenizer, encode a corpus into a token file, print or decode ids."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from rnnlm_cli.commands._ui import log, warn

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
    "  echo \"the dogs run .\" | rnnlm tokenize - --tokenizer model.pt --print ids | rnnlm tokenize - --tokenizer model.pt --decode"
)


def command(
    corpus: str = typer.Argument(..., help="Text to learn from and encode (plain or .gz), or '-' for stdin."),
    kind: str = typer.Option("word", help="Tokenizer to learn: word, char, byte or sentencepiece."),
    tokenizer: Optional[str] = typer.Option(None, help="Use this tokenizer (JSON, model or token file) instead of learning one."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Write the binary token file here."),
    save_tokenizer: Optional[str] = typer.Option(None, help="Write the tokenizer as JSON here."),
    print_as: Optional[str] = typer.Option(None, "--print", help="Print each line as 'ids' or 'pieces' to stdout."),
    decode: bool = typer.Option(False, "--decode", help="CORPUS holds lines of ids: print them as text."),
    min_count: int = typer.Option(1, help="word/char: entries seen fewer times become <unk>."),
    max_size: int = typer.Option(0, help="word/char: largest vocabulary, specials included; 0 = no limit."),
    vocab_size: int = typer.Option(8000, help="sentencepiece: vocabulary size."),
    model_type: str = typer.Option("unigram", "--sp-model", help="sentencepiece: bpe or unigram."),
    strict: bool = typer.Option(False, "--strict", help="Refuse invalid UTF-8 instead of replacing it."),
) -> None:
    from rnnlm_cli.config import TokenizerConfig
    from rnnlm_cli.corpus import encode_corpus, learn_tokenizer
    from rnnlm_cli.errors import UsageError
    from rnnlm_cli.sources import tokenizer_from_file
    from rnnlm_cli.textio import check_readable
    from rnnlm_cli.tokenizers import save_tokenizer as write_tokenizer

    if print_as not in (None, "ids", "pieces"):
        raise UsageError(f"--print must be 'ids' or 'pieces', got {print_as!r}")
    if decode:
        if tokenizer is None:
            raise UsageError("--decode needs --tokenizer (a tokenizer JSON, model or token file)")
        _decode_lines(tokenizer_from_file(tokenizer), corpus, strict)
        return
    if not (out or save_tokenizer or print_as):
        raise UsageError("nothing to do: give --out, --print, --save-tokenizer or --decode")
    config = TokenizerConfig(kind=kind, min_count=min_count, max_size=max_size,
                             vocab_size=vocab_size, model_type=model_type)
    check_readable(corpus)
    given = tokenizer_from_file(tokenizer) if tokenizer else None
    if print_as and given is None and not out and corpus == "-":
        raise UsageError("printing from stdin needs --tokenizer, or --out to learn from it first")

    tok = given
    if out:
        stats = encode_corpus(corpus, out, tokenizer=given, config=None if given else config, strict=strict)
        tok = stats.tokenizer
        if stats.invalid_lines:
            warn(f"{corpus}: {stats.invalid_lines} line(s) with invalid UTF-8, {stats.replaced_chars} character(s) replaced")
        summary = (f"{out}: {stats.lines:,} lines, {stats.words:,} words, {stats.tokens:,} tokens "
                   f"({tok.kind} tokenizer, {tok.vocab_size:,} entries)")
        # With --print the ids own stdout, so the summary goes with the logs.
        log(summary) if print_as else print(summary)
    elif tok is None:
        tok = learn_tokenizer(corpus, config, strict=strict)
    if save_tokenizer:
        write_tokenizer(tok, save_tokenizer)
        log(f"tokenizer ({tok.kind}, {tok.vocab_size:,} entries) saved to {save_tokenizer}")
    if print_as:
        source = out if out and corpus == "-" else corpus
        _print_lines(tok, source, print_as, strict)


def _print_lines(tok, source: str, print_as: str, strict: bool) -> None:
    from rnnlm_cli.tokenfile import is_token_file, open_token_file
    from rnnlm_cli.textio import iter_lines

    write = sys.stdout.write
    render = (lambda ids: " ".join(map(str, ids))) if print_as == "ids" else (lambda ids: " ".join(tok.piece(i) for i in ids))
    if is_token_file(source):
        # stdin was consumed while encoding: print the lines back from the token file.
        tokens = open_token_file(source).tokens
        line: list[int] = []
        for start in range(0, len(tokens), 1 << 20):
            for token in tokens[start:start + (1 << 20)].tolist():
                if token == tok.eos_id:
                    write(render(line) + "\n")
                    line = []
                else:
                    line.append(token)
        return
    for text in iter_lines(source, strict=strict):
        write(render(tok.encode(text)) + "\n")


def _decode_lines(tok, source: str, strict: bool) -> None:
    from rnnlm_cli.errors import DataError
    from rnnlm_cli.textio import iter_lines

    for number, text in enumerate(iter_lines(source, strict=strict), start=1):
        try:
            ids = [int(field) for field in text.split()]
        except ValueError:
            raise DataError(f"{source}:{number}: expected whitespace-separated token ids") from None
        bad = [i for i in ids if not 0 <= i < tok.vocab_size]
        if bad:
            raise DataError(f"{source}:{number}: id {bad[0]} is outside the vocabulary (0..{tok.vocab_size - 1})")
        sys.stdout.write(tok.decode(ids).rstrip("\n") + "\n")
