"""One ``rnnlm tokenize`` call as the user gave it, checked as a whole.

``tokenize`` learns a tokenizer (or takes one given), encodes a text into a token file,
prints it as ids or pieces, saves the tokenizer, or decodes ids back to text. The options
that cannot mean anything together are refused here (exit 2), before any file is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnnlm_cli.config import TokenizerConfig, check_values
from rnnlm_cli.errors import UsageError

PRINT_AS = ("ids", "pieces")
"""What ``--print`` writes for each line."""
LEARNING = ("kind", "min_count", "max_size", "vocab_size", "model_type")
"""The options of a tokenizer learned from the text (TokenizerConfig's, by their flags' fields)."""
FLAGS = {"corpus": "CORPUS", "print_as": "--print", "model_type": "--sp-model"}
"""Fields whose flag (or argument) is not ``--`` and the field's name with dashes."""


@dataclass(frozen=True)
class TokenizeRequest:
    """The options of one ``rnnlm tokenize`` call (None: not given)."""

    corpus: str
    """Text to learn from and encode (plain or .gz), or '-' for stdin."""
    kind: str | None = None
    """Tokenizer to learn: word, char, byte or sentencepiece."""
    tokenizer: str | None = None
    """Use this tokenizer (JSON, model or token file) instead of learning one."""
    symbols: str | None = None
    """Use a recogniser's vocabulary instead of learning one: a Kaldi symbol table ('word id' lines,
    words.txt) or an ESPnet token list (one token per line, id = line number). Its words keep their
    order; <eos> is 0 and <unk> 1 as in every vocabulary; <eps>, <s>, </s>, #N, <blank> and <sos/eos>
    are not words. The table must be UTF-8, and is kept in the tokenizer: 'rnnlm export --format
    symbols' writes it back byte for byte."""
    out: str | None = None
    """Write the binary token file here."""
    save_tokenizer: str | None = None
    """Write the tokenizer as JSON here."""
    print_as: str | None = None
    """Print each line as 'ids' or 'pieces' to stdout."""
    decode: bool = False
    """CORPUS holds lines of ids: print them as text."""
    min_count: int | None = None
    """word/char: entries seen fewer times become <unk>."""
    max_size: int | None = None
    """word/char: largest vocabulary, specials included; 0 = no limit."""
    vocab_size: int | None = None
    """sentencepiece: vocabulary size."""
    model_type: str | None = None
    """sentencepiece: bpe or unigram."""
    reverse: bool = False
    """Read each line right to left, for 'rnnlm train --reverse' (a backward model): ids and pieces
    come last word first (for char, byte and sentencepiece: last token first), the line end
    last; --decode turns such lines back into reading order. The token file and the saved
    tokenizer record it; a tokenizer or model given that reads right to left does so anyway."""
    strict: bool = False
    """Refuse invalid UTF-8 instead of replacing it."""

    def __post_init__(self) -> None:
        check_values(self, FLAGS)
        if self.print_as not in (None, *PRINT_AS):
            raise UsageError(f"--print must be 'ids' or 'pieces', got {self.print_as!r}")
        if self.symbols is not None and self.tokenizer is not None:
            raise UsageError("--symbols and --tokenizer each give the tokenizer: pick one")
        if self.decode:
            if self.source is None:
                raise UsageError("--decode needs --tokenizer (a tokenizer JSON, model or token file) or --symbols")
            return
        if not (self.out or self.save_tokenizer or self.print_as):
            raise UsageError("nothing to do: give --out, --print, --save-tokenizer or --decode")
        learning = [name for name in LEARNING if getattr(self, name) is not None]
        if self.source is not None and learning:
            given = ", ".join(FLAGS.get(name, "--" + name.replace("_", "-")) for name in learning)
            raise UsageError(f"{given} learn a tokenizer; with {self.source_flag} there is nothing to learn")
        if self.print_as and self.source is None and not self.out and self.corpus == "-":
            raise UsageError("printing from stdin needs --tokenizer, or --out to learn from it first")
        _ = self.learning  # its values are checked now, before any file is read

    @property
    def source(self) -> str | None:
        """The file the tokenizer comes from (--tokenizer or --symbols); None: learned from CORPUS."""
        return self.tokenizer if self.tokenizer is not None else self.symbols

    @property
    def source_flag(self) -> str:
        return "--symbols" if self.symbols is not None else "--tokenizer"

    @property
    def learning(self) -> TokenizerConfig:
        """How a tokenizer is learned from CORPUS: the options given, the defaults for the rest."""
        return TokenizerConfig(**{name: getattr(self, name) for name in LEARNING if getattr(self, name) is not None},
                               reverse=self.reverse)
