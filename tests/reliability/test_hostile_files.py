"""Files from elsewhere: a foreign, damaged or hostile file is one line and exit 65, never code run.

Models, token files and tokenizers travel between machines and people. Loading one must
never run code stored in it, never end in a traceback, and always say in one line what is
wrong, with the exit code for bad data (65).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import pickle
import subprocess
import sys
import warnings

import pytest
import torch
from typer.testing import CliRunner

from rnnlm_cli.store.checkpoint import VERSION, load_checkpoint, load_model, save_checkpoint
from rnnlm_cli.cli import app
from rnnlm_cli.config import TokenizerConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.errors import CheckpointError, DataError, TokenizerMismatchError
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.text.sentencepiece_tokenizer import SentencePieceTokenizer, train_sentencepiece
from rnnlm_cli.store.tokenizer_sources import tokenizer_from_file
from rnnlm_cli.text.tokenfile import HEADER_SIZE, TokenFileWriter, is_token_file, open_token_file
from rnnlm_cli.text.tokenizers import WordTokenizer, fingerprint, load_tokenizer_file, save_tokenizer, tokenizer_from_dict

WORDS = WordTokenizer(["<eos>", "<unk>", "a", "b", "c"])
CONFIG = ModelConfig(vocab_size=5, emb=4, hidden=6, layers=1, dropout=0.0)


class PlantedCode:
    """Unpickling this opens (so creates) the marker file: the classic pickle payload."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    save_checkpoint(path, build_model(CONFIG), WORDS.to_dict())
    return path


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("a b c\nc b\n", encoding="utf-8")
    return path


def payload_of(path) -> dict:
    return torch.load(path, weights_only=True)


def write_payload(path, payload: dict):
    with open(path, "wb") as handle:
        torch.save(payload, handle)
    return path


def refused_by_cli(path, text) -> str:
    """`rnnlm eval` and `rnnlm generate` exit 65 with one stderr line; returns that line."""
    runner = CliRunner()
    lines: list[str] = []
    for args in (["eval", str(path), str(text)], ["generate", str(path), "--max-tokens", "3", "--seed", "1"]):
        result = runner.invoke(app, args, env={"RNNLM_DEBUG": None})
        lines = result.stderr.splitlines()
        assert result.exit_code == 65, (args, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("rnnlm: error: "), result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    return lines[0]


# ---- code in pickles -------------------------------------------------------------------

PLANTERS = {
    "torch.save": lambda payload, handle: torch.save(payload, handle),
    "torch.save protocol 4": lambda payload, handle: torch.save(payload, handle, pickle_protocol=4),
    "raw pickle": lambda payload, handle: pickle.dump(payload, handle),
}


@pytest.mark.parametrize("planter", PLANTERS)
def test_planted_code_is_refused_and_never_runs(tmp_path, model_file, text, planter):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        PLANTERS[planter](payload_of(model_file) | {"metrics": {"note": PlantedCode(marker)}}, handle)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match="would run code"):
            load_checkpoint(evil)
    # torch warns about a foreign pickle protocol before refusing: nothing must reach the user.
    assert [str(w.message) for w in caught] == []
    assert "would run code" in refused_by_cli(evil, text)
    with pytest.raises(DataError):
        tokenizer_from_file(str(evil))
    assert not marker.exists()


def test_refusal_is_one_line_on_the_real_stderr(tmp_path, model_file, text):
    # A real process: warnings and C++ messages would go to file descriptor 2, past Python.
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        torch.save(payload_of(model_file) | {"model_config": PlantedCode(marker)}, handle, pickle_protocol=4)
    env = {k: v for k, v in os.environ.items() if k not in ("RNNLM_DEBUG", "PYTHONWARNINGS")}
    result = subprocess.run([sys.executable, "-W", "default", "-m", "rnnlm_cli", "eval", str(evil), str(text)],
                            capture_output=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert result.returncode == 65
    expected = (f"rnnlm: error: {evil}: refused: the file holds objects that would run code when loaded "
                "(not an rnnlm checkpoint, or a tampered one)")
    assert result.stderr.decode().splitlines() == [expected]
    assert not marker.exists()


# ---- files of another format -------------------------------------------------------------

def _safetensors(tmp_path, model_file):
    from rnnlm_cli.store.export import export_safetensors

    model, tokenizer, _ = load_model(model_file)
    export_safetensors(model, tokenizer.to_dict(), str(tmp_path / "m.safetensors"))
    return tmp_path / "m.safetensors"


def _onnx(tmp_path, model_file):
    pytest.importorskip("onnx")
    from rnnlm_cli.store.export import export_onnx

    export_onnx(load_model(model_file)[0], str(tmp_path / "m.onnx"))
    return tmp_path / "m.onnx"


def _token_file(tmp_path, model_file):
    with TokenFileWriter(str(tmp_path / "c.tok")) as writer:
        writer.write([2, 3, 0])
        writer.close({"tokenizer": WORDS.to_dict()})
    return tmp_path / "c.tok"


def _tokenizer_json(tmp_path, model_file):
    save_tokenizer(WORDS, str(tmp_path / "tok.json"))
    return tmp_path / "tok.json"


def _write(name: str, data: bytes):
    def make(tmp_path, model_file):
        (tmp_path / name).write_bytes(data)
        return tmp_path / name
    return make


FOREIGN = {
    "safetensors": (_safetensors, "is a safetensors export; load the .pt model, or use it with safetensors tools"),
    "onnx": (_onnx, "is an ONNX export"),
    "token file": (_token_file, "is a token file, not a model; give it to `rnnlm train`"),
    "tokenizer json": (_tokenizer_json, "is a tokenizer JSON file, not a model"),
    "text": (_write("notes.txt", "the dog runs .\nthé cat\n".encode()), "is a text file, not an rnnlm model"),
    "other json": (_write("cfg.json", b'{"lr": 0.1}\n'), "is a JSON file, not an rnnlm model"),
    "empty": (_write("empty.pt", b""), "the file is empty"),
    "gzip": (_write("m.pt.gz", gzip.compress(b"hello")), "is gzip-compressed"),
    "plain pickle": (_write("d.pkl", pickle.dumps({"weights": [1.0, 2.0]})), "is a plain pickle file"),
    "random bytes": (_write("r.bin", bytes(range(256)) * 4), "not an rnnlm model (unknown format"),
}


@pytest.mark.parametrize("kind", FOREIGN)
def test_a_file_of_another_format_is_named(tmp_path, model_file, text, kind):
    make, message = FOREIGN[kind]
    path = make(tmp_path, model_file)
    with pytest.raises(CheckpointError) as refusal:
        load_checkpoint(path)
    assert str(refusal.value).startswith(f"{path}: {message}")
    assert refused_by_cli(path, text) == f"rnnlm: error: {refusal.value}"


# ---- damaged checkpoints -----------------------------------------------------------------

def test_truncated_checkpoint(tmp_path, model_file, text):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(model_file.read_bytes()[:-100])
    assert "corrupt or truncated" in refused_by_cli(cut, text)


def test_newer_checkpoint_version(tmp_path, model_file, text):
    newer = write_payload(tmp_path / "newer.pt", payload_of(model_file) | {"version": VERSION + 1})
    assert refused_by_cli(newer, text).endswith(
        f"format version {VERSION + 1} is newer than this rnnlm reads (version {VERSION}); upgrade rnnlm")


@pytest.mark.parametrize("version", [0, -1, "1", 1.0, True, None])
def test_damaged_checkpoint_version(tmp_path, model_file, version):
    path = write_payload(tmp_path / "v.pt", payload_of(model_file) | {"version": version})
    with pytest.raises(CheckpointError, match="checkpoint is damaged"):
        load_checkpoint(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused(tmp_path, model_file, text, bad):
    payload = payload_of(model_file)
    payload["state_dict"]["rnn.weight_hh_l0"][2, 1] = bad
    path = write_payload(tmp_path / "nan.pt", payload)
    with pytest.raises(CheckpointError) as refusal:
        load_checkpoint(path)
    assert str(refusal.value) == f"{path}: weights hold NaN or infinite values (tensor rnn.weight_hh_l0)"
    assert refused_by_cli(path, text) == f"rnnlm: error: {refusal.value}"


def test_non_finite_optimizer_state_is_not_the_weights(tmp_path, model_file):
    # Adam's moments may overflow in a diverging run; the weights are still usable.
    payload = payload_of(model_file)
    payload["training_state"] = {"optimizer": {"state": {0: {"exp_avg": torch.tensor([float("nan")])}}},
                                 "rng": {"torch": torch.get_rng_state()}}
    path = write_payload(tmp_path / "last.pt", payload)
    model, _, checkpoint = load_model(path)
    assert checkpoint.training_state["rng"]["torch"].dtype == torch.uint8
    assert torch.isfinite(model(torch.tensor([[2], [3]]))[0]).all()


def _set_weight(name, value):
    def change(payload):
        payload["state_dict"][name] = value
    return change


def _drop_weight(name):
    def change(payload):
        del payload["state_dict"][name]
    return change


SHAPES = {
    "wrong shape": (_set_weight("embedding.weight", torch.zeros(3, 3)),
                    "tensor embedding.weight has shape (3, 3), the config needs (5, 4)"),
    "missing": (_drop_weight("decoder.bias"), "missing tensor decoder.bias"),
    "extra": (_set_weight("rnn.weight_ih_l7", torch.zeros(2)), "unexpected tensor rnn.weight_ih_l7"),
}


@pytest.mark.parametrize("case", SHAPES)
def test_weights_that_do_not_fit_the_config(tmp_path, model_file, text, case):
    change, detail = SHAPES[case]
    payload = payload_of(model_file)
    change(payload)
    path = write_payload(tmp_path / "shape.pt", payload)
    with pytest.raises(CheckpointError) as refusal:
        load_model(path)
    assert str(refusal.value) == f"{path}: weights do not fit the stored model config ({detail})"
    assert refused_by_cli(path, text) == f"rnnlm: error: {refusal.value}"


def test_a_huge_config_with_few_weights_is_refused_before_allocating(tmp_path, model_file):
    # Building this model would take about a terabyte.
    payload = payload_of(model_file)
    payload["model_config"] |= {"hidden": 65536, "layers": 60}
    path = write_payload(tmp_path / "huge.pt", payload)
    with pytest.raises(CheckpointError, match="weights do not fit the stored model config"):
        load_model(path)
    payload["model_config"] |= {"layers": 1}
    with pytest.raises(CheckpointError, match="the config needs"):
        load_model(write_payload(path, payload))


@pytest.mark.parametrize("change", [
    {"model_config": {"vocab_size": 5, "emb": 4.0, "hidden": 6, "layers": 1}},
    {"model_config": {"vocab_size": 5, "emb": True, "hidden": 6, "layers": 1}},
    {"model_config": {"vocab_size": "5"}},
    {"model_config": {"vocab_size": 5, "colour": "red"}},
    {"model_config": {"emb": 4}},
    {"model_config": {"vocab_size": 5, "dropout": float("nan")}},
    {"model_config": [5, 4]},
    {"state_dict": [torch.zeros(2)]},
    {"state_dict": {"embedding.weight": [[0.0] * 4] * 5}},
    {"state_dict": {7: torch.zeros(2)}},
    {"state_dict": {"embedding.weight": torch.zeros(5, 4, dtype=torch.int64)}},
    {"state_dict": {"embedding.weight": torch.zeros(5, 4).to_sparse()}},
    {"tokenizer": "word"},
    {"metrics": [1, 2]},
    {"format": ["rnnlm-checkpoint"]},
])
def test_damaged_contents_are_one_checkpoint_error(tmp_path, model_file, change):
    path = write_payload(tmp_path / "bad.pt", payload_of(model_file) | change)
    with pytest.raises(CheckpointError) as refusal:
        load_model(path)
    assert len(str(refusal.value).splitlines()) == 1


def test_incomplete_checkpoint_names_what_is_missing(tmp_path, model_file):
    payload = payload_of(model_file)
    del payload["state_dict"], payload["tokenizer"]
    path = write_payload(tmp_path / "part.pt", payload)
    with pytest.raises(CheckpointError, match=r"incomplete \(no tokenizer, state_dict\)"):
        load_checkpoint(path)


@pytest.mark.parametrize("tokenizer", [
    {"kind": "word", "version": 1, "pieces": ["<eos>", "<unk>", 3, "b", "c"]},
    {"kind": "word", "version": 1},
    {"kind": "sentencepiece", "version": 1, "model": "AAAA"},
    {"kind": ["word"], "version": 1},
    {"kind": "word"},
])
def test_malformed_tokenizer_in_a_checkpoint(tmp_path, model_file, text, tokenizer):
    path = write_payload(tmp_path / "tok.pt", payload_of(model_file) | {"tokenizer": tokenizer})
    with pytest.raises(CheckpointError, match="the tokenizer stored in the model is damaged"):
        load_model(path)
    with pytest.raises(CheckpointError, match="the tokenizer stored in the model is damaged"):
        tokenizer_from_file(str(path))
    assert "the tokenizer stored in the model is damaged" in refused_by_cli(path, text)


def test_tokenizer_that_does_not_match_the_model(tmp_path, text):
    path = tmp_path / "m.pt"
    bigger = WordTokenizer(["<eos>", "<unk>", "a", "b", "c", "d"])
    save_checkpoint(path, build_model(CONFIG), bigger.to_dict())
    with pytest.raises(TokenizerMismatchError, match="the tokenizer has 6 entries but the model 5"):
        load_model(path)
    refused_by_cli(path, text)


# ---- tokenizer descriptions --------------------------------------------------------------

@pytest.fixture(scope="module")
def sp_proto() -> bytes:
    lines = ["the dog runs .", "a cat sees the dog .", "the cats run home ."] * 20
    return train_sentencepiece(lines, TokenizerConfig(kind="sentencepiece", vocab_size=290)).model_proto


def _sp_dict(proto: bytes) -> dict:
    return {"kind": "sentencepiece", "version": 1, "model": base64.b64encode(proto).decode("ascii")}


def _edited_proto(proto: bytes, edit) -> bytes:
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(proto)
    edit(model)
    return model.SerializeToString()


def _rename_last(piece):
    def edit(model):
        model.pieces[-1].piece = piece
    return edit


def _duplicate_last(model):
    model.pieces[-1].piece = model.pieces[-2].piece


def _swap_specials(model):
    model.pieces[0].piece, model.pieces[1].piece = "<unk>", "<eos>"


BAD_TOKENIZERS = {
    "not a dict": ["word"],
    "no kind": {"version": 1, "pieces": ["<eos>", "<unk>"]},
    "kind not a string": {"kind": {"word": 1}, "version": 1},
    "unknown kind": {"kind": "bpe", "version": 1},
    "version missing": {"kind": "byte"},
    "version a string": {"kind": "byte", "version": "1"},
    "version a bool": {"kind": "byte", "version": True},
    "pieces missing": {"kind": "word", "version": 1},
    "pieces a string": {"kind": "char", "version": 1, "pieces": "<eos><unk>ab"},
    "non-string piece": {"kind": "word", "version": 1, "pieces": ["<eos>", "<unk>", None]},
    "specials swapped": {"kind": "word", "version": 1, "pieces": ["<unk>", "<eos>", "a"]},
    "special again": {"kind": "word", "version": 1, "pieces": ["<eos>", "<unk>", "a", "<eos>"]},
    "duplicate word": {"kind": "word", "version": 1, "pieces": ["<eos>", "<unk>", "a", "b", "a"]},
    "duplicate char": {"kind": "char", "version": 1, "pieces": ["<eos>", "<unk>", "x", "x"]},
    "word with space": {"kind": "word", "version": 1, "pieces": ["<eos>", "<unk>", "a b"]},
    "empty word": {"kind": "word", "version": 1, "pieces": ["<eos>", "<unk>", ""]},
    "long char": {"kind": "char", "version": 1, "pieces": ["<eos>", "<unk>", "ab"]},
    "lone surrogate": {"kind": "char", "version": 1, "pieces": ["<eos>", "<unk>", "\ud800"]},
    "model missing": {"kind": "sentencepiece", "version": 1},
    "model a number": {"kind": "sentencepiece", "version": 1, "model": 12},
    "bad base64": {"kind": "sentencepiece", "version": 1, "model": "not base64!"},
    "non-ascii base64": {"kind": "sentencepiece", "version": 1, "model": "AAé="},
    "proto that fails to load": _sp_dict(b"\x0a\x05hello this is not a model"),
    "empty proto": _sp_dict(b""),
}


@pytest.mark.parametrize("case", BAD_TOKENIZERS)
def test_malformed_tokenizer_is_one_data_error(tmp_path, capfd, case):
    data = BAD_TOKENIZERS[case]
    with pytest.raises(DataError) as refusal:
        tokenizer_from_dict(data)
    assert len(str(refusal.value).splitlines()) == 1
    assert capfd.readouterr().err == ""  # sentencepiece's C++ logging writes straight to fd 2
    path = tmp_path / "tok.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataError, match=f"^{path}: "):
        load_tokenizer_file(str(path))


@pytest.mark.parametrize("case", ["duplicate piece", "specials swapped", "piece not UTF-8", "cut short", "empty"])
def test_malformed_sentencepiece_model_is_one_data_error(sp_proto, capfd, case):
    if case == "duplicate piece":
        proto = _edited_proto(sp_proto, _duplicate_last)
    elif case == "specials swapped":
        proto = _edited_proto(sp_proto, _swap_specials)
    elif case == "piece not UTF-8":
        proto = _edited_proto(sp_proto, _rename_last("QQQQ")).replace(b"QQQQ", b"\xff\xfe\xc3\x28")
    elif case == "cut short":
        proto = sp_proto[: len(sp_proto) // 2]
    else:
        proto = b""
    assert SentencePieceTokenizer(sp_proto).encode("the dog")  # the model before the damage is fine
    with pytest.raises(DataError) as refusal:
        tokenizer_from_dict(_sp_dict(proto))
    message = str(refusal.value)
    assert len(message.splitlines()) == 1 and message.isprintable()
    assert "src/" not in message  # no file names from inside sentencepiece
    assert capfd.readouterr().err == ""
    if case == "empty":
        assert message == "sentencepiece model cannot be loaded (it is empty)"


@pytest.mark.parametrize("content", [
    b"[" * 100000,
    b'{"kind": "word", "version": 1, "pieces": ' + b"9" * 5000 + b"}",
    b"\xff\xfe not UTF-8",
    b'{"kind": "word", "version": 1, "pieces": ["<eos>", "<unk>", "a", "b"]',
], ids=["deep nesting", "5000-digit number", "not UTF-8", "cut short"])
def test_tokenizer_file_that_is_not_json(tmp_path, text, content):
    path = tmp_path / "tok.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match="not a tokenizer file"):
        load_tokenizer_file(str(path))
    result = CliRunner().invoke(app, ["tokenize", str(text), "--tokenizer", str(path), "--print", "ids"],
                                env={"RNNLM_DEBUG": None})
    assert result.exit_code == 65 and len(result.stderr.splitlines()) == 1, result.stderr


def test_tokenizer_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "tok.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(WORDS.to_dict()).encode())
    assert tokenizer_from_file(str(path)).encode("a c") == [2, 4]


# ---- token files -------------------------------------------------------------------------

def _token_file_with(path, metadata: dict, ids=(2, 3, 0)):
    with TokenFileWriter(str(path)) as writer:
        writer.write(list(ids))
        writer.close({"tokenizer": WORDS.to_dict(), **metadata})
    return path


@pytest.mark.parametrize("field,value", [
    ("lines", "2"), ("lines", -1), ("lines", True), ("words", 2.5), ("tokens", None),
    ("oov_tokens", "0"), ("source", 3), ("fingerprint", ["x"]), ("tokenizer", "word"),
    ("tokenizer", None), ("fingerprint", "0123456789abcdef"),
])
def test_token_file_metadata_of_the_wrong_type(tmp_path, field, value):
    path = _token_file_with(tmp_path / "c.tok", {field: value})
    with pytest.raises(DataError, match="re-create it with `rnnlm tokenize`"):
        open_token_file(str(path))


def test_token_file_metadata_as_written_is_accepted(tmp_path):
    metadata = {"fingerprint": fingerprint(WORDS), "source": "x.txt", "lines": 1, "words": 2, "tokens": 3,
                "oov_tokens": None, "invalid_lines": 0, "replaced_chars": 0, "rnnlm_version": "0.1"}
    assert open_token_file(str(_token_file_with(tmp_path / "c.tok", metadata))).metadata["words"] == 2


def test_token_file_with_deeply_nested_metadata(tmp_path):
    path = _token_file_with(tmp_path / "c.tok", {})
    raw = path.read_bytes()
    nested = b"[" * 100000 + b"]" * 100000
    header = bytearray(raw[:HEADER_SIZE])
    header[32:40] = len(nested).to_bytes(8, "little")
    path.write_bytes(bytes(header) + raw[HEADER_SIZE:HEADER_SIZE + 6] + nested)
    with pytest.raises(DataError, match="metadata is not JSON"):
        open_token_file(str(path))


def test_token_file_id_outside_the_vocabulary_at_the_end(tmp_path, text):
    path = _token_file_with(tmp_path / "c.tok", {}, ids=[2] * 200000 + [5])
    with pytest.raises(DataError, match="id 5 outside the vocabulary of 5"):
        open_token_file(str(path))
    result = CliRunner().invoke(app, ["train", str(path), "--max-steps", "1", "--out", str(tmp_path / "m.pt")],
                                env={"RNNLM_DEBUG": None})
    assert result.exit_code == 65 and len(result.stderr.splitlines()) == 1, result.stderr


def test_is_token_file_on_impossible_paths(tmp_path):
    assert not is_token_file("bad\0name")
    assert not is_token_file(tmp_path)
