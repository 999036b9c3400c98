"""Token file: layout, round trip, item size, and refusal of damaged files."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

from rnnlm_cli.errors import DataError, InputMissingError
from rnnlm_cli.text.tokenfile import TokenFileWriter, is_token_file, itemsize_for, open_token_file
from rnnlm_cli.text.tokenizers import ByteTokenizer, WordTokenizer

WORDS = WordTokenizer(["<eos>", "<unk>", "a", "b", "c"])


def write(path, chunks, tokenizer=WORDS, itemsize=2, **extra):
    metadata = {"tokenizer": tokenizer.to_dict(), "lines": 2, "source": "x.txt", **extra}
    with TokenFileWriter(str(path), itemsize=itemsize) as writer:
        for chunk in chunks:
            writer.write(chunk)
        writer.close(metadata)
    return metadata


def test_round_trip_ids_and_metadata(tmp_path):
    path = tmp_path / "c.tok"
    metadata = write(path, [[2, 3, 0], np.array([4, 1, 0], dtype=np.int64), []])
    token_file = open_token_file(str(path))
    assert token_file.tokens.tolist() == [2, 3, 0, 4, 1, 0]
    assert len(token_file) == 6
    assert token_file.metadata == metadata
    assert token_file.tokenizer.to_dict() == WORDS.to_dict()
    assert token_file.tokens.dtype == np.dtype("<u2")
    with pytest.raises(ValueError):
        token_file.tokens[0] = 1


def test_header_layout(tmp_path):
    path = tmp_path / "c.tok"
    write(path, [[2, 3, 0]], itemsize=4)
    raw = path.read_bytes()
    magic, version, itemsize, count, offset, length = struct.unpack("<8sIIQQQ", raw[:40])
    assert (magic, version, itemsize, count) == (b"RNNLMTOK", 1, 4, 3)
    assert raw[40:64] == bytes(24)
    assert offset == 64 + 3 * 4 and offset + length == len(raw)
    assert np.frombuffer(raw[64:offset], dtype="<u4").tolist() == [2, 3, 0]
    assert json.loads(raw[offset:])["source"] == "x.txt"


def test_itemsize_choice_and_range():
    assert (itemsize_for(257), itemsize_for(65535), itemsize_for(65536)) == (2, 2, 4)


def test_wide_ids_need_itemsize_4(tmp_path):
    with pytest.raises(ValueError):
        write(tmp_path / "narrow.tok", [[70000]], itemsize=2)
    assert not (tmp_path / "narrow.tok").exists()
    big = WordTokenizer(["<eos>", "<unk>"] + [f"w{i}" for i in range(70000)])
    write(tmp_path / "wide.tok", [[70001, 0]], tokenizer=big, itemsize=4)
    token_file = open_token_file(str(tmp_path / "wide.tok"))
    assert token_file.tokens.tolist() == [70001, 0]
    assert token_file.tokens.dtype == np.dtype("<u4")


def test_empty_token_file_opens(tmp_path):
    write(tmp_path / "e.tok", [])
    assert len(open_token_file(str(tmp_path / "e.tok"))) == 0


def test_nothing_left_without_close_or_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with TokenFileWriter(str(tmp_path / "a.tok")) as writer:
            writer.write([1, 2])
    with pytest.raises(KeyError):
        with TokenFileWriter(str(tmp_path / "b.tok")) as writer:
            writer.write([1, 2])
            raise KeyError("boom")
    assert os.listdir(tmp_path) == []


def test_is_token_file(tmp_path):
    write(tmp_path / "c.tok", [[0]])
    (tmp_path / "text.txt").write_text("RNNLM is a text\n")
    (tmp_path / "short").write_bytes(b"RNN")
    assert is_token_file(str(tmp_path / "c.tok"))
    for name in ("text.txt", "short", "missing", "."):
        assert not is_token_file(str(tmp_path / name))


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "c.tok"
    write(path, [[2, 3, 0, 4, 0]])
    return path


def damage(path, position, data):
    raw = bytearray(path.read_bytes())
    raw[position:position + len(data)] = data
    path.write_bytes(bytes(raw))


def test_wrong_magic(good):
    damage(good, 0, b"NOTATOKF")
    with pytest.raises(DataError, match="not an rnnlm token file"):
        open_token_file(str(good))


def test_unknown_version(good):
    damage(good, 8, struct.pack("<I", 2))
    with pytest.raises(DataError, match="version 2 is not supported"):
        open_token_file(str(good))


@pytest.mark.parametrize("keep", [3, 20, 64, 70, -1])
def test_truncated(good, keep):
    raw = good.read_bytes()
    good.write_bytes(raw[:keep])
    with pytest.raises(DataError, match="rnnlm"):
        open_token_file(str(good))


def test_metadata_not_json(good):
    raw = good.read_bytes()
    damage(good, len(raw) - 3, b"\xff\xff\xff")
    with pytest.raises(DataError, match="metadata is not JSON"):
        open_token_file(str(good))


def test_id_outside_vocabulary(good):
    damage(good, 64 + 2, struct.pack("<H", 5))  # vocabulary has 5 entries: ids 0..4
    with pytest.raises(DataError, match="id 5 outside the vocabulary of 5"):
        open_token_file(str(good))


def test_bad_tokenizer_in_metadata(tmp_path):
    path = tmp_path / "c.tok"
    with TokenFileWriter(str(path)) as writer:
        writer.write([0])
        writer.close({"tokenizer": {"kind": "word", "version": 9}})
    with pytest.raises(DataError, match="re-create it with `rnnlm tokenize`"):
        open_token_file(str(path))


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputMissingError):
        open_token_file(str(tmp_path / "missing.tok"))
    with pytest.raises(InputMissingError):
        open_token_file(str(tmp_path))


def test_byte_tokenizer_file(tmp_path):
    tok = ByteTokenizer()
    write(tmp_path / "b.tok", [tok.encode("hé") + [0]], tokenizer=tok)
    token_file = open_token_file(str(tmp_path / "b.tok"))
    assert token_file.tokenizer.decode(token_file.tokens.tolist()) == "hé\n"
