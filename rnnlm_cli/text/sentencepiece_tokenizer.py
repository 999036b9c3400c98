"""Subword tokenizer learned with sentencepiece (BPE or unigram), with byte fallback.

Choices that make it fit a language model:

* ``<eos>`` is id 0 and ``<unk>`` id 1, as for the word and char tokenizers; no BOS, no
  padding. Encoding never adds BOS/EOS: the caller appends ``<eos>`` after each line.
* Byte fallback: a character outside the learned pieces becomes its UTF-8 bytes, so
  nothing is unknown, and no normalization (the ``identity`` rule, extra whitespace
  kept), so ``decode(encode(line)) == line`` for every line, except that a literal U+2581
  (sentencepiece's own space mark, "▁") comes back as a space.
* Learned from a reservoir sample of at most ``sample_lines`` lines (long ones cut into
  chunks) with a fixed seed and a fixed thread count: unigram scores depend on how the
  work is split between threads, so the same corpus gives the same model on any machine.
"""

from __future__ import annotations

import base64
import binascii
import io
import random
import re
from bisect import bisect_right
from typing import Any, Iterable, Iterator, Sequence

import sentencepiece as spm

from rnnlm_cli.config import TokenizerConfig
from rnnlm_cli.errors import DataError, UsageError
from rnnlm_cli.text.tokenizer_base import EOS, EOS_ID, FORMAT_VERSION, UNK, UNK_ID, EncodedLine, StreamingDecoder, word_owners

_THREADS = 4
_SEED = 20240229
# sentencepiece skips training sentences longer than max_sentence_length bytes; longer
# lines are cut into chunks of at most this many characters (4 bytes each at most).
_CHUNK_CHARS = 4096
_MAX_SENTENCE_BYTES = 4 * _CHUNK_CHARS


class SentencePieceTokenizer:
    kind = "sentencepiece"
    eos_id = EOS_ID
    reverse = False
    unk_id: int | None = UNK_ID

    def __init__(self, model_proto: bytes) -> None:
        if not model_proto:
            # sentencepiece would keep an unloaded model, which logs to stderr when asked anything.
            raise DataError("sentencepiece model cannot be loaded (it is empty)")
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except (RuntimeError, OSError, TypeError, ValueError) as exc:
            raise DataError(f"sentencepiece model cannot be loaded ({_load_error(exc)})") from exc
        if self._sp.eos_id() != EOS_ID or self._sp.unk_id() != UNK_ID:
            raise DataError(f"sentencepiece model must have {EOS} as id {EOS_ID} and {UNK} as id {UNK_ID}")
        self.vocab_size = self._sp.get_piece_size()
        try:
            # sentencepiece does not check that pieces are UTF-8; a damaged one fails later in encode.
            self._sp.id_to_piece(list(range(self.vocab_size)))
        except UnicodeDecodeError as exc:
            raise DataError("sentencepiece model cannot be loaded (a piece is not valid UTF-8)") from exc
        self.model_proto = bytes(model_proto)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SentencePieceTokenizer:
        model = data.get("model")
        if not isinstance(model, str):
            raise DataError("sentencepiece tokenizer: 'model' must be a base64 string")
        try:
            proto = base64.b64decode(model.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise DataError("sentencepiece tokenizer: 'model' is not valid base64") from exc
        return cls(proto)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": FORMAT_VERSION,
                "model": base64.b64encode(self.model_proto).decode("ascii")}

    def encode(self, line: str) -> list[int]:
        return self._sp.encode(line)

    def encode_batch(self, lines: Sequence[str]) -> list[list[int]]:
        return self._sp.encode(list(lines))

    def encode_line(self, line: str) -> EncodedLine:
        owners, words = word_owners(line)
        proto = self._sp.encode(line, return_type="proto")
        # Piece offsets are UTF-8 byte offsets into the line; map each to its character.
        char_starts: list[int] = []
        offset = 0
        for char in line:
            char_starts.append(offset)
            offset += len(char.encode("utf-8", errors="replace"))
        ids: list[int] = []
        word_index: list[int] = []
        for piece in proto.pieces:
            ids.append(piece.id)
            char = min(bisect_right(char_starts, piece.begin) - 1, len(line) - 1)
            word_index.append(owners[char] if char >= 0 else 0)
        return EncodedLine(ids, word_index, words, [False] * words)

    def decode(self, ids: Iterable[int]) -> str:
        lines: list[list[int]] = [[]]
        for token in ids:
            self._check(token)
            if token == EOS_ID:
                lines.append([])
            else:
                lines[-1].append(token)
        return "\n".join(self._sp.decode(line) for line in lines)

    def piece(self, token_id: int) -> str:
        self._check(token_id)
        return self._sp.id_to_piece(token_id)

    def is_byte(self, token_id: int) -> bool:
        return self._sp.is_byte(token_id)

    def decode_line(self, ids: list[int]) -> str:
        return self._sp.decode(ids)

    def streaming_decoder(self) -> StreamingDecoder:
        return _PieceDecoder(self)

    def _check(self, token_id: int) -> None:
        if not 0 <= token_id < self.vocab_size:
            raise DataError(f"token id {token_id} is outside the vocabulary of {self.vocab_size}")


class _PieceDecoder:
    """Decodes the current line again at each piece and prints what was added.

    sentencepiece's decoder drops the dummy-prefix space of a line's first piece and joins
    byte pieces into characters, so the text of a piece depends on its neighbours; decoding
    the whole line keeps the output identical to :meth:`SentencePieceTokenizer.decode`.
    Text is held back while the line ends in a byte piece (a UTF-8 sequence may be open).
    Each push costs time linear in the current line's length.
    """

    def __init__(self, tokenizer: SentencePieceTokenizer) -> None:
        self._tokenizer = tokenizer
        self._line: list[int] = []
        self._printed = 0

    def push(self, token_id: int) -> str:
        self._tokenizer._check(token_id)
        if token_id == EOS_ID:
            return self.flush() + "\n"
        self._line.append(token_id)
        if self._tokenizer.is_byte(token_id):
            return ""
        return self._new_text()

    def flush(self) -> str:
        text = self._new_text()
        self._line = []
        self._printed = 0
        return text

    def _new_text(self) -> str:
        text = self._tokenizer.decode_line(self._line)
        new = text[self._printed:]
        self._printed = len(text)
        return new


def _load_error(exc: Exception) -> str:
    """sentencepiece's complaint about a model, as one line for the user."""
    lines = [] if isinstance(exc, UnicodeDecodeError) else str(exc).strip().splitlines()
    text = lines[0].removeprefix("INTERNAL: ").strip() if lines else ""
    if not text or text.startswith("src/"):  # an assertion inside sentencepiece's own code
        return "not a valid sentencepiece model"
    # It quotes pieces of the model, which may hold control characters.
    return "".join(char if char.isprintable() else "?" for char in text)


def train_sentencepiece(lines: Iterable[str], config: TokenizerConfig,
                        source: str = "corpus") -> SentencePieceTokenizer:
    """Learn a model from a reservoir sample of ``config.sample_lines`` lines of ``lines``.

    ``source`` names the text in error messages.
    """
    sample = reservoir_sample(_chunks(lines), config.sample_lines)
    if not sample:
        raise DataError(f"{source}: no text to learn a sentencepiece model from (every line is empty)")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sample),
            model_writer=model,
            model_type=config.model_type,
            vocab_size=config.vocab_size,
            hard_vocab_limit=False,
            byte_fallback=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            eos_id=EOS_ID, eos_piece=EOS, unk_id=UNK_ID, unk_piece=UNK, bos_id=-1, pad_id=-1,
            # The sample is already drawn and shuffled order does not matter to training.
            input_sentence_size=0,
            shuffle_input_sentence=False,
            max_sentence_length=_MAX_SENTENCE_BYTES,
            num_threads=_THREADS,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise _training_error(exc, config, source) from exc
    return SentencePieceTokenizer(model.getvalue())


def _training_error(exc: RuntimeError, config: TokenizerConfig, source: str) -> Exception:
    needed = re.search(r"Vocabulary size is smaller than required_chars\. \d+ vs (\d+)", str(exc))
    if needed:
        return UsageError(f"--vocab-size {config.vocab_size} is too small for {source}: sentencepiece "
                          f"with byte fallback needs at least {needed.group(1)} (256 bytes, the characters "
                          "seen and the specials)")
    return DataError(f"{source}: sentencepiece training failed ({str(exc).splitlines()[0]})")


def _chunks(lines: Iterable[str]) -> Iterator[str]:
    """Non-empty lines, long ones cut at a space (if any) into pieces sentencepiece will train on."""
    for line in lines:
        while len(line) > _CHUNK_CHARS:
            cut = line.rfind(" ", 1, _CHUNK_CHARS)
            cut = cut if cut > 0 else _CHUNK_CHARS
            yield line[:cut]
            line = line[cut:]
        if line:
            yield line


def reservoir_sample(items: Iterable[str], size: int, seed: int = _SEED) -> list[str]:
    """A uniform sample of ``size`` items in one pass and bounded memory (Vitter's algorithm R)."""
    rng = random.Random(seed)
    sample: list[str] = []
    for seen, item in enumerate(items):
        if seen < size:
            sample.append(item)
        else:
            slot = rng.randint(0, seen)
            if slot < size:
                sample[slot] = item
    return sample
