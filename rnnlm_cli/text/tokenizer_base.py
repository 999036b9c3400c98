"""What every tokenizer shares: the special tokens and their ids, the protocol, word ownership.

The built-in tokenizers (:mod:`rnnlm_cli.text.tokenizers`) and sentencepiece
(:mod:`rnnlm_cli.text.sentencepiece_tokenizer`) both import this module and not each other,
so the factory in ``tokenizers`` can build either without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence

FORMAT_VERSION = 1
EOS = "<eos>"
UNK = "<unk>"
EOS_ID = 0
UNK_ID = 1
SPECIALS = (EOS, UNK)
"""The specials every vocabulary tokenizer starts with, in id order."""


@dataclass
class EncodedLine:
    """One line's tokens and how they map onto its whitespace-separated words."""

    ids: list[int]
    """Token ids, without the end-of-line token."""
    word_index: list[int]
    """For each token, the index of the word it belongs to (separators belong to the next word)."""
    words: int
    """Number of whitespace-separated words, ``len(line.split())``."""
    oov: list[bool]
    """Per word: True when the word tokenizer scores it as ``<unk>`` because it is not in the vocabulary."""


class StreamingDecoder(Protocol):
    def push(self, token_id: int) -> str:
        """Text that can be printed once ``token_id`` is known (maybe empty)."""
        ...

    def flush(self) -> str:
        """Whatever is still held back at the end."""
        ...


class Tokenizer(Protocol):
    kind: str
    vocab_size: int
    eos_id: int
    unk_id: int | None
    reverse: bool
    """True: each line's tokens in reverse order, for a backward model (:mod:`rnnlm_cli.text.backward`)."""

    def encode(self, line: str) -> list[int]: ...

    def encode_batch(self, lines: Sequence[str]) -> list[list[int]]: ...

    def encode_line(self, line: str) -> EncodedLine: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def piece(self, token_id: int) -> str: ...

    def streaming_decoder(self) -> StreamingDecoder: ...

    def to_dict(self) -> dict[str, Any]: ...


def word_owners(line: str) -> tuple[list[int], int]:
    """For each character, the index of its word; whitespace belongs to the following word.

    Returns the owners and the number of words. Trailing whitespace belongs to the last
    word; a line without words maps everything to word 0. ``str.isspace`` is the test
    ``str.split()`` uses, so the word count matches ``len(line.split())``.
    """
    owners: list[int] = []
    started = 0
    in_word = False
    for char in line:
        if char.isspace():
            in_word = False
            owners.append(started)
        else:
            if not in_word:
                in_word = True
                started += 1
            owners.append(started - 1)
    last = max(started - 1, 0)
    return [min(owner, last) for owner in owners], started
