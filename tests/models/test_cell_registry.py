"""A cell defined here and registered is a cell of every command: train, eval, generate, export.

The cell is an Elman network with ReLU, h' = relu(W_ih x + b_ih + W_hh h + b_hh), its state
named ``s`` (not h) so that the exported graph's names can only have come from the registry.
Its fused implementation is torch's ``nn.RNN(nonlinearity="relu")``, its reference the
equation as a step function; every score is checked against the equation computed here,
in float64, from the weights the commands wrote.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from typer.testing import CliRunner

from conftest import TINY_TEXT
from rnnlm_cli.cli import app
from rnnlm_cli.errors import CheckpointError
from rnnlm_cli.models.lm import build_model, parameter_count
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.reference import ReferenceRecurrent
from rnnlm_cli.models.registry import CELLS, CellSpec, register_cell, registered_cell, unregister_cell
from rnnlm_cli.models.sizing import estimated_parameters, tensor_count
from rnnlm_cli.store.checkpoint import load_checkpoint, load_model
from rnnlm_cli.text.tokenizers import tokenizer_from_dict

NAME = "relu-elman"
LAYERS, EMB, HIDDEN = 2, 6, 10


def relu_step(xw, state, weight_hh, bias_hh):
    """One step: s' = relu(W_ih x + b_ih + W_hh s + b_hh), with xw = W_ih x + b_ih given."""
    (s,) = state
    return (torch.relu(xw + F.linear(s, weight_hh, bias_hh)),)


class FusedReluRNN(nn.RNN):
    """torch's ReLU Elman network behind the registry's tuple-state interface."""

    def __init__(self, input_size, hidden_size, num_layers, dropout):
        super().__init__(input_size, hidden_size, num_layers, nonlinearity="relu",
                         dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, x, state):
        y, s = super().forward(x, state[0])
        return y, (s,)

    def forward_layer(self, layer, x, state, weight_hh=None):
        weight_hh = getattr(self, f"weight_hh_l{layer}") if weight_hh is None else weight_hh
        xw = F.linear(x, getattr(self, f"weight_ih_l{layer}"), getattr(self, f"bias_ih_l{layer}"))  # (T, B, H)
        outputs = []
        for step in range(x.shape[0]):
            state = relu_step(xw[step], state, weight_hh, getattr(self, f"bias_hh_l{layer}"))
            outputs.append(state[0])
        return torch.stack(outputs), state


def reference_relu_rnn(input_size, hidden_size, num_layers, dropout):
    return ReferenceRecurrent(relu_step, 1, 1, input_size, hidden_size, num_layers, dropout)


SPEC = CellSpec(gates=1, state_names=("s",), fused=FusedReluRNN, reference=reference_relu_rnn)


def by_the_equation(weights, ids, state=None):
    """Log-softmax (T, V) after each of ``ids`` and the final state (L, H), computed from the
    state dict ``weights`` by the cell's equation, one stream, float64."""
    w = {name: t.double() for name, t in weights.items()}
    s = [torch.zeros(HIDDEN, dtype=torch.float64) if state is None else state[k].double() for k in range(LAYERS)]
    rows = []
    for token in ids:
        x = w["embedding.weight"][token]  # (E,)
        for k in range(LAYERS):
            s[k] = torch.relu(w[f"rnn.weight_ih_l{k}"] @ x + w[f"rnn.bias_ih_l{k}"]
                              + w[f"rnn.weight_hh_l{k}"] @ s[k] + w[f"rnn.bias_hh_l{k}"])
            x = s[k]
        rows.append(torch.log_softmax(w["decoder.weight"] @ x + w["decoder.bias"], 0))
    return torch.stack(rows), torch.stack(s)


def invoke(runner, *args):
    result = runner.invoke(app, [str(a) for a in args], env={"RNNLM_DEBUG": None, "NO_COLOR": None})
    assert result.exit_code == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def cell():
    with registered_cell(NAME, SPEC):
        yield NAME
    assert NAME not in CELLS


@pytest.fixture(scope="module")
def trained(cell, tmp_path_factory):
    """The toy cell trained through ``rnnlm train`` on its reference implementation."""
    root = tmp_path_factory.mktemp("relu")
    corpus, valid, test = root / "train.txt", root / "valid.txt", root / "test.txt"
    corpus.write_text("\n".join(TINY_TEXT) + "\n", encoding="utf-8")
    valid.write_text("\n".join(TINY_TEXT[:4]) + "\n", encoding="utf-8")
    test.write_text("the dog sees a cat .\nthe cats run .\n", encoding="utf-8")
    out = root / "model.pt"
    runner = CliRunner()
    result = invoke(runner, "train", corpus, "--valid", valid, "--out", out, "--cell", cell, "--impl", "reference",
                    "--layers", LAYERS, "--emb", EMB, "--hidden", HIDDEN, "--dropout", "0", "--batch-size", "4",
                    "--bptt", "6", "--max-steps", "15", "--lr", "0.01", "--json")
    assert math.isfinite(json.loads(result.stdout)["best_valid_ppl"])
    checkpoint = load_checkpoint(out)
    return {"runner": runner, "root": root, "out": out, "test": test, "checkpoint": checkpoint,
            "tokenizer": tokenizer_from_dict(checkpoint.tokenizer)}


def test_the_toy_cell_is_sized_by_its_spec_alone(cell):
    for impl in ("fused", "reference"):
        config = ModelConfig(vocab_size=13, cell=cell, impl=impl, emb=EMB, hidden=HIDDEN, layers=3, attention=2)
        model = build_model(config)
        assert estimated_parameters(config) == parameter_count(model)
        assert tensor_count(config) == len(model.state_dict())
        assert config.state_count == 1


def test_training_wrote_the_toy_cell_and_it_loads_back(trained):
    checkpoint = trained["checkpoint"]
    assert (checkpoint.model_config.cell, checkpoint.model_config.impl) == (NAME, "reference")
    assert checkpoint.state_dict["rnn.weight_ih_l0"].shape == (HIDDEN, EMB)  # one gate block
    assert checkpoint.state_dict["rnn.weight_hh_l1"].shape == (HIDDEN, HIDDEN)
    model, tokenizer, _ = load_model(trained["out"])
    assert isinstance(model.rnn, ReferenceRecurrent) and model.rnn.cell is relu_step
    ids = tokenizer.encode("the dog sees a cat .")
    with torch.no_grad():
        logits, (s,) = model(torch.tensor(ids).unsqueeze(1))  # (T, 1, V), s (L, 1, H)
    expected, final = by_the_equation(checkpoint.state_dict, ids)
    torch.testing.assert_close(torch.log_softmax(logits[:, 0].double(), -1), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(s[:, 0].double(), final, rtol=0, atol=1e-5)


def test_eval_scores_the_stream_as_the_equation_does(trained):
    result = invoke(trained["runner"], "eval", trained["out"], trained["test"], "--json")
    totals = json.loads(result.stdout)
    tokenizer = trained["tokenizer"]
    # The stream context: <eos> before the first line, every line's tokens then <eos> predicted.
    targets = []
    for line in trained["test"].read_text(encoding="utf-8").splitlines():
        targets += tokenizer.encode(line) + [tokenizer.eos_id]
    inputs = [tokenizer.eos_id] + targets[:-1]
    rows, _ = by_the_equation(trained["checkpoint"].state_dict, inputs)
    logprob = float(rows[torch.arange(len(targets)), torch.tensor(targets)].sum()) / math.log(10)
    assert (totals["sentences"], totals["words"], totals["oovs"]) == (2, 10, 0)
    assert totals["logprob"] == pytest.approx(logprob, rel=1e-5)
    assert totals["ppl"] == pytest.approx(10 ** (-logprob / len(targets)), rel=1e-5)


def test_greedy_generation_follows_the_equation(trained):
    result = invoke(trained["runner"], "generate", trained["out"], "--max-tokens", "8", "--temperature", "0")
    tokenizer, weights = trained["tokenizer"], trained["checkpoint"].state_dict
    ids = [tokenizer.eos_id]
    for _ in range(8):
        rows, _ = by_the_equation(weights, ids)
        ids.append(int(rows[-1].argmax()))
    words = [tokenizer.piece(i) for i in ids[1:] if i != tokenizer.eos_id]
    assert result.stdout.split() == words


def test_safetensors_export_rebuilds_the_toy_cell(trained):
    from rnnlm_cli.store.export import load_safetensors

    path = trained["root"] / "model.safetensors"
    invoke(trained["runner"], "export", trained["out"], "--format", "safetensors", "--out", path)
    model, tokenizer = load_safetensors(str(path))
    assert model.config == trained["checkpoint"].model_config
    assert tokenizer == trained["checkpoint"].tokenizer
    ids = trained["tokenizer"].encode("a cat sees the dog .")
    with torch.no_grad():
        logits, _ = model(torch.tensor(ids).unsqueeze(1))
    expected, _ = by_the_equation(trained["checkpoint"].state_dict, ids)
    torch.testing.assert_close(torch.log_softmax(logits[:, 0].double(), -1), expected, rtol=0, atol=1e-5)


def test_onnx_export_names_the_state_as_the_registry_does(trained):
    ort = pytest.importorskip("onnxruntime")
    path = trained["root"] / "model.onnx"
    invoke(trained["runner"], "export", trained["out"], "--format", "onnx", "--out", path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["tokens", "s0"]
    assert [o.name for o in session.get_outputs()] == ["log_probs", "sn"]
    # Another length and batch than the exporter traced, from a state not zero: the graph
    # (torch's fused ReLU RNN) computes the reference's equation.
    tokenizer, weights = trained["tokenizer"], trained["checkpoint"].state_dict
    streams = [tokenizer.encode("the dogs see a cat ."), tokenizer.encode("a dog runs the cats .")]
    start = torch.rand(LAYERS, 2, HIDDEN, generator=torch.Generator().manual_seed(3))
    logits, final = session.run(None, {"tokens": torch.tensor(streams).T.numpy(), "s0": start.numpy()})
    for b, ids in enumerate(streams):
        expected, last = by_the_equation(weights, ids, start[:, b])
        torch.testing.assert_close(torch.log_softmax(torch.from_numpy(logits[:, b]).double(), -1), expected,
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(final[:, b]).double(), last, rtol=0, atol=1e-5)


def test_a_model_of_a_cell_no_longer_registered_is_refused(trained):
    spec = unregister_cell(NAME)
    try:
        with pytest.raises(CheckpointError, match=NAME):
            load_checkpoint(trained["out"])
    finally:
        register_cell(NAME, spec)


def test_the_registry_and_the_command_line_load_without_torch():
    # ``rnnlm --help`` lists the registry's cells; it must not wait for torch to import.
    code = ("import sys, rnnlm_cli.cli, rnnlm_cli.models.registry as r; "
            "assert 'torch' not in sys.modules, 'torch imported'; print(','.join(r.CELLS))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().split(",") == ["lstm", "gru", "rnn", "mogrifier"]
