"""Property-based fuzzing of the readers of foreign files: token files, tokenizers, checkpoints.

Each reader has one contract for any input: a usable result or one typed error
(DataError, or its CheckpointError), never another exception and never code run.
Runs are derandomized, so CI sees the same examples every time; how many comes from the
Hypothesis profile (tests/conftest.py).
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import assume, event, given
from hypothesis import strategies as st

from rnnlm_cli.store.checkpoint import load_model, save_checkpoint
from rnnlm_cli.config import TokenizerConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.errors import DataError
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.text.sentencepiece_tokenizer import SentencePieceTokenizer, train_sentencepiece
from rnnlm_cli.text.tokenfile import MAGIC, TokenFileWriter, is_token_file, open_token_file
from rnnlm_cli.text.tokenizers import EOS, UNK, WordTokenizer, fingerprint, tokenizer_from_dict

WORDS = WordTokenizer(["<eos>", "<unk>", "a", "b", "c", "dd"])


class Files:
    """A fresh file name per example: a token file stays memory-mapped after it is opened."""

    def __init__(self, folder) -> None:
        self.folder = folder
        self.numbers = itertools.count()
        self.marker = folder / "marker"  # what planted code would create

    def write(self, data: bytes, suffix: str = ".bin"):
        path = self.folder / f"f{next(self.numbers)}{suffix}"
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    return Files(tmp_path_factory.mktemp("fuzz"))


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None, tail: bytes) -> bytes:
    """Bytes set at offsets (taken modulo the length), then cut to a length, then garbage appended."""
    out = bytearray(data)
    for offset, value in flips:
        if out:
            out[offset % len(out)] = value
    if cut is not None:
        out = out[: cut % (len(out) + 1)]
    return bytes(out) + tail


_FLIPS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6)
_CUT = st.integers(0, 1 << 20)
_TAIL = st.binary(min_size=1, max_size=24)
# (flips, cut, tail) for mutate: one kind of damage at a time, or all three together.
DAMAGE = st.one_of(
    st.tuples(_FLIPS, st.none(), st.just(b"")),
    st.tuples(st.just([]), _CUT, st.just(b"")),
    st.tuples(st.just([]), st.none(), _TAIL),
    st.tuples(_FLIPS, _CUT, _TAIL),
)


# ---- token files ---------------------------------------------------------------------------

def check_token_file(path) -> None:
    """What open_token_file guarantees: DataError, or a file whose every part is usable.

    Files here hold far fewer than 65536 ids, so the reader's sampled id check covers all.
    """
    try:
        token_file = open_token_file(str(path))
    except DataError:
        event("refused")
        return
    event("opened")
    assert is_token_file(str(path))
    metadata = token_file.metadata
    assert isinstance(metadata, dict)
    for key in ("lines", "words", "tokens", "invalid_lines", "replaced_chars", "oov_tokens"):
        if key in metadata and not (key == "oov_tokens" and metadata[key] is None):
            assert type(metadata[key]) is int and metadata[key] >= 0, key
    for key in ("fingerprint", "source", "rnnlm_version"):
        assert key not in metadata or isinstance(metadata[key], str), key
    assert metadata.get("fingerprint", fingerprint(token_file.tokenizer)) == fingerprint(token_file.tokenizer)
    assert token_file.tokens.dtype in (np.dtype("<u2"), np.dtype("<u4"))
    vocab_size = token_file.tokenizer.vocab_size
    assert len(token_file) == 0 or int(token_file.tokens.max()) < vocab_size
    assert token_file.tokenizer.decode(token_file.tokens.tolist()) is not None
    rebuilt = tokenizer_from_dict(token_file.tokenizer.to_dict())
    assert fingerprint(rebuilt) == fingerprint(token_file.tokenizer)


@pytest.fixture(scope="module")
def good_token_file(files) -> bytes:
    path = files.folder / "good.tok"
    with TokenFileWriter(str(path)) as writer:
        writer.write([2, 3, 0, 4, 5, 1, 0])
        writer.close({"tokenizer": WORDS.to_dict(), "fingerprint": fingerprint(WORDS), "lines": 2,
                      "words": 5, "tokens": 7, "source": "x.txt"})
    return path.read_bytes()


@given(data=st.binary(max_size=200) | st.binary(max_size=120).map(lambda rest: MAGIC + rest))
def test_arbitrary_bytes_as_a_token_file(files, data):
    check_token_file(files.write(data, ".tok"))


@given(damage=DAMAGE)
def test_damaged_token_file(files, good_token_file, damage):
    check_token_file(files.write(mutate(good_token_file, *damage), ".tok"))


JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
JSON = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
# Python strings may hold lone surrogates (JSON's "\ud800"), which UTF-8 cannot encode.
CHARACTERS = st.characters() | st.sampled_from(["\ud800", "\udc80"])
ENTRIES = (st.lists(CHARACTERS, max_size=8) | st.lists(st.text(CHARACTERS, max_size=3), max_size=8)
           | st.lists(st.sampled_from([EOS, UNK]) | st.text(max_size=3), max_size=8))
PIECES = st.tuples(st.booleans(), ENTRIES).map(lambda pair: [EOS, UNK, *pair[1]] if pair[0] else pair[1])


KINDS = st.sampled_from(["word", "char", "byte", "sentencepiece"])


# Entries a word or char vocabulary could hold, unique, so that many descriptions are valid.
VOCABULARIES = (st.lists(CHARACTERS, unique=True, max_size=8)
                | st.lists(st.text(CHARACTERS, min_size=1, max_size=3), unique=True, max_size=8)
                ).map(lambda entries: [EOS, UNK, *entries])


SHORT_TEXT = st.text(max_size=12)


def tokenizer_like(models: st.SearchStrategy[str] = SHORT_TEXT) -> st.SearchStrategy:
    """Dicts shaped like a tokenizer description: nearly right, or with any field of the wrong kind."""
    nearly_right = st.fixed_dictionaries({"kind": KINDS, "version": st.just(1),
                                          "pieces": VOCABULARIES | PIECES, "model": models})
    any_field_wrong = st.fixed_dictionaries({}, optional={
        "kind": KINDS | JSON, "version": st.just(1) | JSON, "pieces": PIECES | JSON, "model": models | JSON,
    })
    return nearly_right | any_field_wrong


AS_WRITTEN = {"tokenizer": WORDS.to_dict(), "fingerprint": fingerprint(WORDS), "lines": 2, "words": 5,
              "tokens": 7, "oov_tokens": None, "source": "x.txt"}
METADATA_KEYS = st.sampled_from([*AS_WRITTEN, "invalid_lines", "other"]) | st.text(max_size=4)


@given(ids=st.lists(st.integers(0, WORDS.vocab_size - 1), max_size=20),
       bad_id=st.none() | st.tuples(st.integers(0, 20), st.integers(WORDS.vocab_size, 65535)),
       itemsize=st.sampled_from([2, 4]), dropped=st.sets(st.sampled_from(list(AS_WRITTEN)), max_size=2),
       changes=st.dictionaries(METADATA_KEYS, JSON | tokenizer_like(), max_size=2))
def test_token_file_with_arbitrary_ids_and_metadata(files, ids, bad_id, itemsize, dropped, changes):
    if bad_id is not None:
        ids.insert(bad_id[0], bad_id[1])
    metadata = {key: value for key, value in AS_WRITTEN.items() if key not in dropped} | changes
    assume(_encodable(metadata))  # the writer cannot write a lone surrogate
    path = files.folder / f"w{next(files.numbers)}.tok"
    with TokenFileWriter(str(path), itemsize=itemsize) as writer:
        writer.write(ids)
        writer.close(metadata)
    check_token_file(path)


def _encodable(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        return False
    return True


# ---- tokenizer descriptions ----------------------------------------------------------------

@pytest.fixture(scope="module")
def sp_model() -> bytes:
    lines = ["the dog runs .", "a cat sees the dog .", "the cats run home ."] * 20
    return train_sentencepiece(lines, TokenizerConfig(kind="sentencepiece", vocab_size=290)).model_proto


def check_tokenizer(data) -> None:
    """DataError, or a tokenizer that serializes, re-reads to itself and round-trips its own text."""
    try:
        tokenizer = tokenizer_from_dict(data)
    except DataError:
        event("refused")
        return
    event(f"{tokenizer.kind} tokenizer")
    description = tokenizer.to_dict()
    json.dumps(description, ensure_ascii=False).encode("utf-8")  # save_tokenizer and token files can write it
    assert tokenizer_from_dict(description).to_dict() == description
    if tokenizer.kind in ("word", "char"):
        entries = tokenizer.pieces[2:]
        line = (" " if tokenizer.kind == "word" else "").join(entries)
        ids = tokenizer.encode(line)
        assert ids == list(range(2, tokenizer.vocab_size))
    else:
        line = "the dog é 1"
        ids = tokenizer.encode(line)
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    assert tokenizer.decode(ids) == line
    decoder = tokenizer.streaming_decoder()
    assert "".join(decoder.push(i) for i in ids) + decoder.flush() == line


@given(data=JSON | tokenizer_like())
def test_arbitrary_data_as_a_tokenizer(data):
    check_tokenizer(data)


@given(data=st.fixed_dictionaries({"kind": st.sampled_from(["word", "char"]), "version": st.just(1),
                                   "pieces": VOCABULARIES | PIECES}))
def test_word_and_char_vocabularies(data):
    check_tokenizer(data)


@given(data=st.data())
def test_tokenizer_like_data_with_a_real_sentencepiece_model(sp_model, data):
    real = base64.b64encode(sp_model).decode("ascii")
    check_tokenizer(data.draw(tokenizer_like(st.just(real) | SHORT_TEXT)))


@given(damage=DAMAGE)
def test_damaged_sentencepiece_model(sp_model, damage):
    """A damaged model: DataError, or one that encodes and decodes without failing.

    (A flipped byte may change a piece or a score, so the text need not come back the same.)
    """
    proto = mutate(sp_model, *damage)
    try:
        tokenizer = tokenizer_from_dict({"kind": "sentencepiece", "version": 1,
                                         "model": base64.b64encode(proto).decode("ascii")})
    except DataError:
        event("refused")
        return
    event("loaded")
    ids = tokenizer.encode("the dog é 1")
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    tokenizer.decode(ids)
    decoder = tokenizer.streaming_decoder()
    "".join(decoder.push(i) for i in ids) + decoder.flush()
    tokenizer.encode_line("the dog é 1")
    assert isinstance(tokenizer, SentencePieceTokenizer)


# ---- checkpoints ---------------------------------------------------------------------------

class PlantedCode:
    """Unpickling this opens (so creates) the marker file."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def checkpoints(files) -> dict[str, bytes]:
    """A real small checkpoint, and the same payload with planted code, zip and raw pickle."""
    torch.manual_seed(0)
    path = files.folder / "model.pt"
    config = ModelConfig(vocab_size=WORDS.vocab_size, cell="gru", emb=4, hidden=5, layers=2, dropout=0.0)
    save_checkpoint(path, build_model(config), WORDS.to_dict())
    payload = torch.load(path, weights_only=True)
    evil = payload | {"metrics": {"note": PlantedCode(files.marker)}}
    with open(files.folder / "evil.pt", "wb") as handle:
        torch.save(evil, handle)
    return {"good": path.read_bytes(), "evil zip": (files.folder / "evil.pt").read_bytes(),
            "evil raw": pickle.dumps(evil)}


def member_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, length) of each member's stored bytes in a zip archive."""
    spans = []
    for info in zipfile.ZipFile(io.BytesIO(data)).infolist():
        # Local header: 30 bytes, then the name and the extra field, then the data.
        local = data[info.header_offset:info.header_offset + 30]
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") \
            + int.from_bytes(local[28:30], "little")
        spans.append((start, max(info.compress_size, 1)))
    return spans


def check_checkpoint(path) -> None:
    """load_model's contract: CheckpointError/DataError, or a model that runs over its vocabulary."""
    try:
        model, tokenizer, checkpoint = load_model(path)
    except DataError as exc:
        event(f"refused: {str(exc).split(': ', 1)[1][:30]}")
        return
    event("loaded")
    vocab_size = checkpoint.model_config.vocab_size
    assert tokenizer.vocab_size == vocab_size
    tokens = torch.tensor([[min(2, vocab_size - 1)], [0], [1]])  # (T=3, B=1)
    with torch.no_grad():
        logits, _ = model(tokens)
    assert logits.shape == (3, 1, vocab_size)
    assert all(torch.isfinite(p).all() for p in model.state_dict().values())


@given(which=st.sampled_from(["good", "evil zip", "evil raw"]), damage=DAMAGE)
def test_damaged_checkpoint(files, checkpoints, which, damage):
    check_checkpoint(files.write(mutate(checkpoints[which], *damage), ".pt"))
    assert not files.marker.exists()


# float32 NaN and infinity, little-endian, beside random bytes.
JUNK = st.binary(min_size=1, max_size=16) | st.sampled_from([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\xff"])


@given(which=st.sampled_from(["good", "evil zip"]), member=st.integers(0, 100),
       start=st.integers(0, 1 << 20), junk=JUNK)
def test_checkpoint_with_a_corrupted_zip_member(files, checkpoints, which, member, start, junk):
    data = bytearray(checkpoints[which])
    spans = member_spans(bytes(data))
    offset, length = spans[member % len(spans)]
    at = offset + start % length
    data[at:at + len(junk)] = junk
    check_checkpoint(files.write(bytes(data), ".pt"))
    assert not files.marker.exists()


SPECIAL_FLOATS = st.sampled_from([0.0, 0.5, -1e38, float("nan"), float("inf"), float("-inf")])
TENSORS = st.builds(
    lambda shape, fill, dtype: torch.full(shape, fill).to(dtype),
    st.sampled_from([(5, 4), (6, 4), (15, 4), (15, 5), (6,), (6, 5), (3,), ()]),
    SPECIAL_FLOATS, st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.bool]))
VALUES = JSON | TENSORS | st.lists(TENSORS, max_size=2) | tokenizer_like()
DELETE = object()


@pytest.fixture(scope="module")
def good_payload(checkpoints) -> dict:
    return torch.load(io.BytesIO(checkpoints["good"]), weights_only=True)


@given(data=st.data())
def test_checkpoint_with_arbitrary_contents(files, good_payload, data):
    """Any value, of any type, at any place of a real checkpoint's payload: loads, or one error."""
    payload = {key: dict(value) if isinstance(value, dict) else value for key, value in good_payload.items()}
    for _ in range(data.draw(st.integers(1, 3))):
        section = data.draw(st.sampled_from([None, "model_config", "state_dict", "tokenizer"]))
        target = payload if section is None or not isinstance(payload.get(section), dict) else payload[section]
        key = data.draw(st.sampled_from(sorted(target, key=str)) | st.text(max_size=5))
        value = data.draw(st.just(DELETE) | VALUES)
        if value is DELETE:
            target.pop(key, None)
        else:
            target[key] = value
    path = files.folder / f"p{next(files.numbers)}.pt"
    with open(path, "wb") as handle:
        torch.save(payload, handle)
    check_checkpoint(path)
