"""Export to ONNX, safetensors and word2vec text, checked against the PyTorch model itself."""

import json
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.errors import CheckpointError, InputMissingError, UsageError
from rnnlm_cli.store.export import (
    export_embeddings,
    export_model,
    export_onnx,
    export_safetensors,
    load_safetensors,
)
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.text.tokenizers import CharTokenizer

from conftest import tiny_model

VOCAB = 13
ATOL = 1e-5


def _proj_model() -> torch.nn.Module:
    """Tied, with hidden (12) != emb (8): the decoder reads a projection of the RNN output."""
    torch.manual_seed(3)
    config = ModelConfig(vocab_size=VOCAB, cell="lstm", emb=8, hidden=12, layers=2, dropout=0.0, tied=True)
    return build_model(config).eval()


def _reference_model() -> torch.nn.Module:
    torch.manual_seed(4)
    config = ModelConfig(vocab_size=VOCAB, cell="gru", impl="reference", emb=8, hidden=12, layers=2, dropout=0.0)
    return build_model(config).eval()


def _attention_model() -> torch.nn.Module:
    torch.manual_seed(5)
    config = ModelConfig(vocab_size=VOCAB, cell="lstm", emb=8, hidden=12, layers=2, dropout=0.0, attention=4)
    return build_model(config).eval()


# name -> (builder, ONNX input names, ONNX output names), as the export module documents them
CASES = {
    "lstm": (lambda: tiny_model(VOCAB, cell="lstm", seed=1), ["tokens", "h0", "c0"], ["log_probs", "hn", "cn"]),
    "gru": (lambda: tiny_model(VOCAB, cell="gru", seed=2), ["tokens", "h0"], ["log_probs", "hn"]),
    "tied_proj": (_proj_model, ["tokens", "h0", "c0"], ["log_probs", "hn", "cn"]),
    "reference_gru": (_reference_model, ["tokens", "h0"], ["log_probs", "hn"]),
    "attention": (_attention_model, ["tokens", "h0", "c0", "mem0", "valid0"], ["log_probs", "hn", "cn", "memn", "validn"]),
}


def _session(path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _random_state(model, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    shape = (model.config.layers, batch, model.config.hidden)
    state = tuple(torch.randn(shape, generator=gen) * 0.5 for _ in range(model.config.state_count))
    window = model.config.attention
    if window:
        # memory partly filled: the first slot of every stream is still empty
        valid = torch.ones(window, batch)
        valid[0] = 0.0
        state += (torch.randn(window, batch, model.config.hidden, generator=gen) * 0.5, valid)
    return state


def _feed(inputs: list[str], tokens: torch.Tensor, state) -> dict[str, np.ndarray]:
    return {"tokens": tokens.numpy(), **{name: s.numpy() for name, s in zip(inputs[1:], state)}}


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    build, inputs, outputs = CASES[request.param]
    model = build()
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    export_onnx(model, str(path))
    return model, _session(path), inputs, outputs, path


def test_onnx_graph_names_are_the_documented_ones(exported):
    model, session, inputs, outputs, _ = exported
    assert [i.name for i in session.get_inputs()] == inputs
    assert [o.name for o in session.get_outputs()] == outputs
    assert len(inputs) == 1 + model.config.state_count + (2 if model.config.attention else 0)


def test_onnx_graph_uses_the_runtime_recurrent_operator(exported):
    onnx = pytest.importorskip("onnx")
    model, _, _, _, path = exported
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert model.config.cell.upper() in ops
    assert "Loop" not in ops


@pytest.mark.parametrize("steps", [1, 7])
@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_matches_torch_from_a_nonzero_state(exported, steps, batch):
    model, session, inputs, _, _ = exported
    gen = torch.Generator().manual_seed(100 * steps + batch)
    tokens = torch.randint(0, VOCAB, (steps, batch), generator=gen)
    state = _random_state(model, batch, gen)
    with torch.no_grad():
        logits, new_state = model(tokens, state)
    got = session.run(None, _feed(inputs, tokens, state))
    assert got[0].shape == (steps, batch, VOCAB)
    np.testing.assert_allclose(got[0], torch.log_softmax(logits, -1).numpy(), atol=ATOL, rtol=1e-4)
    assert len(got) == 1 + len(new_state)
    for onnx_state, torch_state in zip(got[1:], new_state):
        np.testing.assert_allclose(onnx_state, torch_state.numpy(), atol=ATOL, rtol=1e-4)


def test_onnx_step_by_step_equals_one_call_over_the_sequence(exported):
    model, session, inputs, _, _ = exported
    gen = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, VOCAB, (9, 3), generator=gen)
    start = _random_state(model, 3, gen)
    with torch.no_grad():
        logits, final = model(tokens, start)
    state = [s.numpy() for s in start]
    step_logits = []
    for t in range(tokens.shape[0]):
        out = session.run(None, {"tokens": tokens[t : t + 1].numpy(), **dict(zip(inputs[1:], state))})
        step_logits.append(out[0])
        state = out[1:]
    np.testing.assert_allclose(np.concatenate(step_logits), torch.log_softmax(logits, -1).numpy(), atol=ATOL, rtol=1e-4)
    for onnx_state, torch_state in zip(state, final):
        np.testing.assert_allclose(onnx_state, torch_state.numpy(), atol=ATOL, rtol=1e-4)


def test_export_onnx_leaves_an_eval_model_in_eval_mode_and_unchanged(tmp_path):
    pytest.importorskip("onnxruntime")
    model = tiny_model(VOCAB, cell="lstm", seed=5)
    tokens = torch.randint(0, VOCAB, (4, 2), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(tokens)[0]
    weights = {name: t.clone() for name, t in model.state_dict().items()}
    export_onnx(model, str(tmp_path / "m.onnx"))
    assert model.training is False
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(tokens)[0], before)
    for name, t in model.state_dict().items():
        assert torch.equal(t, weights[name])


def test_export_onnx_graph_has_no_dropout_and_the_model_keeps_its_mode(tmp_path):
    torch.manual_seed(6)
    config = ModelConfig(vocab_size=VOCAB, cell="lstm", emb=8, hidden=12, layers=2, dropout=0.5)
    model = build_model(config).train()
    path = tmp_path / "m.onnx"
    export_onnx(model, str(path))
    assert model.training is True
    session = _session(path)
    tokens = torch.randint(0, VOCAB, (5, 2), generator=torch.Generator().manual_seed(1))
    state = model.init_state(2)
    with torch.no_grad():
        expected = model.eval()(tokens, state)[0]
    first = session.run(None, _feed(["tokens", "h0", "c0"], tokens, state))[0]
    second = session.run(None, _feed(["tokens", "h0", "c0"], tokens, state))[0]
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, torch.log_softmax(expected, -1).numpy(), atol=ATOL, rtol=1e-4)


def test_export_model_onnx_writes_beside_the_checkpoint(saved_model):
    path, model, _ = saved_model
    [out] = export_model(str(path), "onnx")
    assert out == str(path.with_suffix(".onnx"))
    session = _session(out)
    tokens = torch.tensor([[2], [3], [4]])
    state = _random_state(model, 1, torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(tokens, state)[0]
    got = session.run(["log_probs"], _feed(["tokens", "h0", "c0"], tokens, state))[0]
    np.testing.assert_allclose(got, torch.log_softmax(expected, -1).numpy(), atol=ATOL, rtol=1e-4)


def test_export_model_refuses_an_unknown_format(saved_model, tmp_path):
    path, _, _ = saved_model
    with pytest.raises(UsageError):
        export_model(str(path), "pickle", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


# --- safetensors ---------------------------------------------------------------------


def _outputs(model, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.config.vocab_size, (6, 2), generator=gen)
    with torch.no_grad():
        return model(tokens, _random_state(model, 2, gen))


@pytest.mark.parametrize("tied", [False, True])
def test_safetensors_round_trip(word_tokenizer, tmp_path, tied):
    model = tiny_model(word_tokenizer.vocab_size, cell="gru", tied=tied, seed=8)
    path = tmp_path / "w.safetensors"
    export_safetensors(model, word_tokenizer.to_dict(), str(path))
    loaded, tokenizer_dict = load_safetensors(str(path))
    assert loaded.config == model.config
    assert tokenizer_dict == word_tokenizer.to_dict()
    assert loaded.training is False
    (logits, state), (expected_logits, expected_state) = _outputs(loaded), _outputs(model)
    assert torch.equal(logits, expected_logits)
    for got, expected in zip(state, expected_state):
        assert torch.equal(got, expected)
    if tied:
        assert loaded.decoder.weight is loaded.embedding.weight
        assert torch.equal(loaded.decoder.weight, model.embedding.weight)


def test_safetensors_tied_projection_round_trip(tmp_path):
    model = _proj_model()
    path = tmp_path / "w.safetensors"
    export_safetensors(model, _word_tokenizer_dict(VOCAB), str(path))
    loaded, _ = load_safetensors(str(path))
    assert model.proj is not None and loaded.proj is not None
    assert loaded.decoder.weight is loaded.embedding.weight
    assert torch.equal(loaded.proj.weight, model.proj.weight)
    assert torch.equal(_outputs(loaded)[0], _outputs(model)[0])


@pytest.mark.parametrize("tied", [False, True])
def test_safetensors_file_reads_without_rnnlm(word_tokenizer, tmp_path, tied):
    from safetensors import safe_open

    model = tiny_model(word_tokenizer.vocab_size, tied=tied, seed=9)
    path = tmp_path / "w.safetensors"
    export_safetensors(model, word_tokenizer.to_dict(), str(path))
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    assert meta["format"] == "rnnlm-checkpoint"
    assert meta["version"] == "1"
    stored = json.loads(meta["model_config"])
    assert {key: stored[key] for key in ("vocab_size", "cell", "impl", "emb", "hidden", "layers", "dropout", "tied")} == {
        "vocab_size": word_tokenizer.vocab_size, "cell": "lstm", "impl": "fused", "emb": 8,
        "hidden": 8 if tied else 12, "layers": 2, "dropout": 0.0, "tied": tied,
    }
    assert ModelConfig(**stored) == model.config  # every other field stored too
    assert json.loads(meta["tokenizer"]) == {"kind": "word", "version": 1, "pieces": word_tokenizer.pieces}
    expected = model.state_dict()
    if tied:
        # the decoder's weight is the embedding's, stored once
        assert "decoder.weight" not in tensors
        expected.pop("decoder.weight")
    assert set(tensors) == set(expected)
    for name, tensor in tensors.items():
        assert torch.equal(tensor, expected[name])


def test_load_safetensors_refuses_other_files(tmp_path):
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not an rnnlm"):
        load_safetensors(str(foreign))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError):
        load_safetensors(str(garbage))
    with pytest.raises(InputMissingError):
        load_safetensors(str(tmp_path / "missing.safetensors"))


@pytest.mark.parametrize("version, model_config, message", [
    ("2", {"vocab_size": VOCAB}, "upgrade"),
    ("1", {"vocab_size": VOCAB, "emb": 8, "hidden": 16, "layers": 2, "dropout": 0.0}, "do not fit"),
])
def test_load_safetensors_refuses_newer_or_mismatched_files(tmp_path, version, model_config, message):
    from safetensors.torch import save_file

    meta = {"format": "rnnlm-checkpoint", "version": version, "model_config": json.dumps(model_config),
            "tokenizer": "{}"}
    path = tmp_path / "w.safetensors"
    save_file({n: t.contiguous() for n, t in tiny_model(VOCAB).state_dict().items()}, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=message):
        load_safetensors(str(path))


def _word_tokenizer_dict(size: int) -> dict:
    from rnnlm_cli.text.tokenizers import WordTokenizer

    return WordTokenizer.from_counts({f"w{i}": size - i for i in range(size - 2)}).to_dict()


def _write_export(path, model, tokenizer: dict, change=None) -> None:
    """An export of ``model`` as export_safetensors writes it, with ``change`` applied to its tensors."""
    from safetensors.torch import save_file

    from rnnlm_cli.store.export import _metadata

    tensors = {name: t.detach().clone().contiguous() for name, t in model.state_dict().items()}
    if model.config.tied:
        tensors.pop("decoder.weight")
    if change:
        change(tensors)
    save_file(tensors, str(path), metadata=_metadata(model.config, tokenizer))


@pytest.mark.parametrize("fault, message", [
    ("nan", "NaN or infinite"),
    ("inf", "NaN or infinite"),
    ("shape", "has shape"),
    ("missing", "missing tensor"),
    ("extra", "unexpected tensor"),
    ("integer", "expected dense floating point"),
])
def test_load_safetensors_checks_weights_as_a_checkpoint_is_checked(tmp_path, fault, message):
    model = tiny_model(VOCAB)
    name = "rnn.weight_hh_l0"

    def change(tensors):
        if fault == "nan":
            tensors[name][0, 0] = float("nan")
        elif fault == "inf":
            tensors[name][-1, -1] = float("-inf")
        elif fault == "shape":
            tensors[name] = torch.zeros(tensors[name].shape[0], tensors[name].shape[1] + 1)
        elif fault == "missing":
            del tensors[name]
        elif fault == "extra":
            tensors["rnn.weight_hh_l9"] = torch.zeros(2)
        elif fault == "integer":
            tensors[name] = torch.zeros(tensors[name].shape, dtype=torch.int64)

    path = tmp_path / "m.safetensors"
    _write_export(path, model, _word_tokenizer_dict(VOCAB), change)
    with pytest.raises(CheckpointError, match=message) as caught:
        load_safetensors(str(path))
    assert caught.value.exit_code == 65 and str(path) in str(caught.value)


def test_load_safetensors_checks_the_tokenizer_and_the_parameter_cap(tmp_path):
    from rnnlm_cli.errors import TokenizerMismatchError

    model = tiny_model(VOCAB, tied=True)
    good = tmp_path / "good.safetensors"
    _write_export(good, model, _word_tokenizer_dict(VOCAB))
    loaded, tokenizer = load_safetensors(str(good))  # tied: the decoder is the embedding again
    assert loaded.decoder.weight.data_ptr() == loaded.embedding.weight.data_ptr()
    with pytest.raises(CheckpointError, match="parameters"):
        load_safetensors(str(good), max_params=10)
    damaged = tmp_path / "damaged.safetensors"
    _write_export(damaged, model, {"kind": "word", "pieces": "not a list"})
    with pytest.raises(CheckpointError, match="tokenizer stored in the model is damaged"):
        load_safetensors(str(damaged))
    other = tmp_path / "other.safetensors"
    _write_export(other, model, _word_tokenizer_dict(VOCAB + 1))
    with pytest.raises(TokenizerMismatchError):
        load_safetensors(str(other))


# --- word2vec text embeddings -------------------------------------------------------


def _char_model():
    text = "the cat sat\ton a mat\u00a0and\u3000so"
    counts: dict[str, int] = {}
    for char in text:
        counts[char] = counts.get(char, 0) + 1
    tokenizer = CharTokenizer.from_counts(counts)
    torch.manual_seed(12)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, emb=5, hidden=6, layers=1, dropout=0.0)
    return build_model(config).eval(), tokenizer


def _read_vec(path) -> tuple[str, list[list[str]]]:
    # split on "\n" only: str.splitlines would also break at characters such as U+0085
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    header, *rows = text[:-1].split("\n")
    return header, [row.split() for row in rows]


def test_embeddings_are_word2vec_text_with_whitespace_escaped(tmp_path):
    model, tokenizer = _char_model()
    assert {" ", "\t", "\u00a0", "\u3000"} <= set(tokenizer.pieces)
    path = tmp_path / "e.vec"
    export_embeddings(model, tokenizer, str(path))
    header, rows = _read_vec(path)
    vocab, dim = tokenizer.vocab_size, 5
    assert header == f"{vocab} {dim}"
    assert len(rows) == vocab
    assert all(len(fields) == dim + 1 for fields in rows)
    escaped = {" ": "<0x20>", "\t": "<0x09>", "\u00a0": "<0xA0>", "\u3000": "<0x3000>"}
    assert [fields[0] for fields in rows] == [escaped.get(p, p) for p in tokenizer.pieces]
    vectors = torch.tensor([[float(v) for v in fields[1:]] for fields in rows])
    torch.testing.assert_close(vectors, model.embedding.weight.detach(), atol=1e-5, rtol=0)


def test_export_model_embeddings_from_a_checkpoint(saved_model):
    path, model, tokenizer = saved_model
    [out] = export_model(str(path), "embeddings")
    assert out == str(path.with_suffix(".vec"))
    header, rows = _read_vec(path.with_suffix(".vec"))
    assert header == f"{tokenizer.vocab_size} 8"
    assert [fields[0] for fields in rows] == tokenizer.pieces
    vectors = torch.tensor([[float(v) for v in fields[1:]] for fields in rows])
    torch.testing.assert_close(vectors, model.embedding.weight.detach(), atol=1e-5, rtol=0)


# --- command line ---------------------------------------------------------------------


def test_cli_export_safetensors_prints_the_path(saved_model, tmp_path):
    path, model, _ = saved_model
    out = tmp_path / "sub" / "weights.safetensors"
    result = CliRunner().invoke(app, ["export", str(path), "--format", "safetensors", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n"
    loaded, _ = load_safetensors(str(out))
    assert torch.equal(_outputs(loaded)[0], _outputs(model)[0])


def test_cli_export_onnx_defaults_to_the_model_name(saved_model):
    pytest.importorskip("onnxruntime")
    path, _, _ = saved_model
    result = CliRunner().invoke(app, ["export", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path.with_suffix('.onnx')}\n"
    assert [i.name for i in _session(path.with_suffix(".onnx")).get_inputs()] == ["tokens", "h0", "c0"]


def test_cli_export_unknown_format_is_a_usage_error(saved_model, tmp_path):
    path, _, _ = saved_model
    before = sorted(os.listdir(tmp_path))
    result = CliRunner().invoke(app, ["export", str(path), "--format", "pickle", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("rnnlm: error:") and "pickle" in lines[0]
    assert sorted(os.listdir(tmp_path)) == before


def test_cli_export_missing_model_exits_66(tmp_path):
    result = CliRunner().invoke(app, ["export", str(tmp_path / "none.pt"), "--format", "safetensors"])
    assert result.exit_code == 66
    assert len(result.stderr.splitlines()) == 1
    assert "none.pt" in result.stderr
    assert os.listdir(tmp_path) == []


# --- failures leave nothing behind ----------------------------------------------------


def _assert_clean(folder, keep: dict[str, bytes]):
    assert sorted(os.listdir(folder)) == sorted(keep)
    for name, content in keep.items():
        assert (folder / name).read_bytes() == content


def test_failed_onnx_export_leaves_no_file(tmp_path, monkeypatch):
    def broken_export(module, args, f, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"half a graph")
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    model = tiny_model(VOCAB, seed=13)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_onnx(model, str(tmp_path / "m.onnx"))
    _assert_clean(tmp_path, {})
    (tmp_path / "old.onnx").write_bytes(b"previous export")
    with pytest.raises(RuntimeError):
        export_onnx(model, str(tmp_path / "old.onnx"))
    _assert_clean(tmp_path, {"old.onnx": b"previous export"})
    assert model.training is False


def test_failed_safetensors_export_leaves_no_file(tmp_path, monkeypatch):
    import safetensors.torch

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export_safetensors(tiny_model(VOCAB, seed=14), {"kind": "byte", "version": 1}, str(tmp_path / "w.safetensors"))
    _assert_clean(tmp_path, {})


def test_failed_embeddings_export_leaves_no_file(tmp_path):
    class FailingTokenizer:
        def piece(self, token_id: int) -> str:
            if token_id == 5:
                raise RuntimeError("no piece")
            return f"t{token_id}"

    with pytest.raises(RuntimeError, match="no piece"):
        export_embeddings(tiny_model(VOCAB, seed=15), FailingTokenizer(), str(tmp_path / "e.vec"))
    _assert_clean(tmp_path, {})


def test_onnx_carries_its_vocabulary_special_ids_and_what_it_outputs(saved_model, tmp_path):
    onnx = pytest.importorskip("onnx")
    path, model, tokenizer = saved_model
    [out] = export_model(str(path), "onnx", str(tmp_path / "m.onnx"))
    graph = onnx.load(out)
    meta = {prop.key: prop.value for prop in graph.metadata_props}
    assert int(meta["eos_id"]) == tokenizer.eos_id and meta["unk_id"] == str(tokenizer.unk_id)
    assert int(meta["vocab_size"]) == model.config.vocab_size
    assert json.loads(meta["tokenizer"]) == tokenizer.to_dict()
    assert json.loads(meta["model_config"])["hidden"] == model.config.hidden
    assert meta["output"].startswith("log_probs (time, batch, vocab): natural-log probabilities")
    # Every axis has a name, the fixed ones too.
    for value in [*graph.graph.input, *graph.graph.output]:
        assert all(dim.dim_param for dim in value.type.tensor_type.shape.dim), value
    named = {value.name: [d.dim_param for d in value.type.tensor_type.shape.dim] for value in graph.graph.output}
    assert named["log_probs"] == ["time", "batch", "vocab"] and named["hn"] == ["layers", "batch", "hidden"]
