"""Models and training states written by rnnlm 0.1 keep loading, scoring and sampling as 0.1 did.

tests/fixtures/v0.1 holds tiny checkpoints that rnnlm 0.1 trained (see its README.md for the
commands) and what 0.1 printed for them: eval in each layout, generate with fixed seeds, and
the result of resuming each training state for two more steps. Here the current code loads
the same files and runs the same commands, and must print the same.

Numbers in text output may differ by one unit in their last printed digit and floats in JSON
by a few float32 roundings: float32 sums are not associative, and another CPU's kernels may
round a last bit the other way. On the machine that recorded them they are identical. Sampled
text must be identical: a draw changes only if a last-bit difference moves a cumulative
probability across the uniform number drawn.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.store.checkpoint import load_checkpoint, load_model

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "v0.1"
EXPECTED = FIXTURE / "expected"
MODELS = ("lstm", "gru", "char", "sp")
STATES = ("lstm", "gru", "char")  # the sentencepiece run's state is not kept (its size)
# torch's own module for each cell, given the fixture's 8-unit embeddings and state.
TORCH_CELLS = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "char": torch.nn.RNN, "sp": torch.nn.LSTM}

# The commands of make_fixture.sh, run from the fixture folder, and the file each one's
# stdout was recorded in. The recording machine had no GPU, so "auto" was the CPU there;
# "--device cpu" keeps a GPU machine on the same kernels.
COMMANDS = {
    "eval.txt": ["eval", "{m}/model.pt", "test.txt"],
    "eval-debug2.txt": ["eval", "{m}/model.pt", "test.txt", "--debug", "2"],
    "eval-json.txt": ["eval", "{m}/model.pt", "test.txt", "--json"],
    "eval-per-sentence.txt": ["eval", "{m}/model.pt", "test.txt", "--context", "sentence", "--per-sentence"],
    "generate.txt": ["generate", "{m}/model.pt", "--seed", "1", "--max-tokens", "20"],
    "generate-prompt.txt": ["generate", "{m}/model.pt", "--prompt", "the dog", "--seed", "7", "--max-tokens", "20",
                            "--num-samples", "2", "--temperature", "0.8", "--top-k", "5"],
}
# make_fixture.sh's training options; resuming must repeat the ones the state records.
TRAIN = ["--valid", "valid.txt", "--layers", "1", "--emb", "8", "--hidden", "8", "--dropout", "0",
         "--batch-size", "2", "--bptt", "5", "--lr", "0.03", "--log-interval", "5", "--seed", "1",
         "--device", "cpu", "--amp", "off", "--deterministic"]
TRAIN_KIND = {"lstm": ["--tokenizer", "word", "--cell", "lstm"],
              "gru": ["--tokenizer", "word", "--cell", "gru", "--tied"],
              "char": ["--tokenizer", "char", "--cell", "rnn"]}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A copy of the fixture folder as the working directory: the recorded output names the
    files as make_fixture.sh did ("file test.txt"), and no run can touch the committed files."""
    shutil.copytree(FIXTURE, tmp_path / "v0.1", ignore=shutil.ignore_patterns("expected"))
    monkeypatch.chdir(tmp_path / "v0.1")
    return tmp_path / "v0.1"


@pytest.fixture
def deterministic_restored():
    """--deterministic switches torch's global deterministic mode on in this process."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args), env={"RNNLM_DEBUG": None, "NO_COLOR": "1"})
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def _last_digit(token: str) -> float:
    """The value of one unit in the last printed digit: 1e-07 for 0.0697342, 10 for 1.2e+02."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def assert_same_text(actual: str, expected: str) -> None:
    """The same text, each number within one unit of its last printed digit (see the top)."""
    if actual == expected:
        return
    assert NUMBER.split(actual) == NUMBER.split(expected), f"text differs:\n{actual}\n---- expected ----\n{expected}"
    for got, want in zip(NUMBER.findall(actual), NUMBER.findall(expected)):
        if got == want:
            continue
        assert not ({"." , "e"}.isdisjoint(got.lower()) and {".", "e"}.isdisjoint(want.lower())), (
            f"count {got} != {want}")
        unit = max(_last_digit(got), _last_digit(want))
        assert abs(float(got) - float(want)) <= 1.01 * unit, f"{got} != {want}"


ADDED_KEYS = {"bits_per_token", "clipped_share", "clip_steps", "clipped_steps", "grad_norm_median", "grad_norm_max",
              "clip_diagnosis", "overfitting", "vocabulary", "direction"}
"""JSON keys later versions added beside 0.1's (a reader of 0.1's keys still finds them all)."""


def assert_same_json(actual: str, expected: str) -> None:
    """The same keys in the same order (besides :data:`ADDED_KEYS`), the same integers and
    strings, floats to float32 noise."""
    got, want = json.loads(actual), json.loads(expected)
    assert [key for key in got if key not in ADDED_KEYS] == list(want)
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
        else:
            assert got[key] == value, key


def expected(name: str) -> str:
    return (EXPECTED / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", MODELS)
def test_loads_with_the_stored_weights_and_tokenizer(name):
    path = FIXTURE / name / "model.pt"
    raw = torch.load(path, weights_only=True)
    assert raw["rnnlm_version"] == "0.1.0" and raw["version"] == 1

    checkpoint = load_checkpoint(path)
    model, tokenizer, _ = load_model(path)
    assert checkpoint.model_config.cell == raw["model_config"]["cell"]
    assert (checkpoint.model_config.emb, checkpoint.model_config.hidden, checkpoint.model_config.layers) == (8, 8, 1)
    assert checkpoint.metrics == raw["metrics"]
    assert checkpoint.metrics["step"] == 20
    assert tokenizer.vocab_size == raw["model_config"]["vocab_size"] == raw["state_dict"]["embedding.weight"].shape[0]
    state = model.state_dict()
    assert sorted(state) == sorted(raw["state_dict"])
    for key, tensor in raw["state_dict"].items():
        assert torch.equal(state[key], tensor), key
    if name == "gru":  # saved --tied: one matrix in and out
        assert model.decoder.weight.data_ptr() == model.embedding.weight.data_ptr()


@pytest.mark.parametrize("name", MODELS)
def test_torch_modules_from_the_raw_weights_give_the_same_logits(name):
    """The file's tensors in torch's own embedding, recurrent module and linear layer."""
    path = FIXTURE / name / "model.pt"
    raw = torch.load(path, weights_only=True)["state_dict"]
    model, tokenizer, _ = load_model(path)
    ids = torch.tensor(tokenizer.encode("the dog sees a cat ."))  # (T,)

    core = TORCH_CELLS[name](8, 8)
    core.load_state_dict({key[len("rnn."):]: value for key, value in raw.items() if key.startswith("rnn.")})
    with torch.no_grad():
        out, _ = core(torch.nn.functional.embedding(ids, raw["embedding.weight"]).unsqueeze(1))  # (T, 1, H)
        want = out @ raw["decoder.weight"].T + raw["decoder.bias"]  # (T, 1, V)
        got, _ = model(ids.unsqueeze(1))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_recorded_probabilities_follow_from_the_raw_weights():
    """The first sentence's probabilities in the recorded debug output, from the LSTM's tensors
    alone: the recording itself is right, not only repeated. A stream starts after an <eos>."""
    raw = torch.load(FIXTURE / "lstm" / "model.pt", weights_only=True)
    weights, pieces = raw["state_dict"], raw["tokenizer"]["pieces"]
    words = "the dog sees a cat .".split()
    ids = torch.tensor([pieces.index("<eos>")] + [pieces.index(w) for w in words] + [pieces.index("<eos>")])
    lstm = torch.nn.LSTM(8, 8)
    lstm.load_state_dict({key[len("rnn."):]: value for key, value in weights.items() if key.startswith("rnn.")})
    with torch.no_grad():
        out, _ = lstm(torch.nn.functional.embedding(ids[:-1], weights["embedding.weight"]))  # (T, H)
        logp = torch.log_softmax(out @ weights["decoder.weight"].T + weights["decoder.bias"], dim=-1)  # (T, V)
    probs = logp[torch.arange(len(ids) - 1), ids[1:]].exp().tolist()
    printed = [float(line.split("= ")[1].split()[1])  # after SRILM's [Ngram] tag
               for line in expected("lstm.eval-debug2.txt").split("\n\n")[0].splitlines() if line.startswith("\tp(")]
    assert len(printed) == len(words) + 1
    for prob, shown in zip(probs, printed):
        assert math.isclose(prob, shown, rel_tol=1e-5), (prob, shown)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("record", list(COMMANDS))
def test_prints_what_v01_printed(workdir, name, record):
    args = [arg.format(m=name) for arg in COMMANDS[record]] + ["--device", "cpu"]
    result = invoke(*args)
    want = expected(f"{name}.{record}")
    if record == "eval-json.txt":
        assert_same_json(result.stdout, want)
    elif record.startswith("generate"):
        assert result.stdout == want
    else:
        assert_same_text(result.stdout, want)


@pytest.mark.parametrize("name", STATES)
def test_resumes_a_v01_training_state(workdir, deterministic_restored, name):
    """Two more steps from 0.1's .last.pt: the same result and the same model as 0.1 gave."""
    state = load_checkpoint(workdir / name / "model.last.pt").training_state
    assert state is not None
    result = invoke("train", "train.txt", *TRAIN, *TRAIN_KIND[name], "--max-steps", "22",
                    "--resume", f"{name}/model.last.pt", "--out", f"{name}/model.pt", "--json")
    assert f"resuming {name}/model.last.pt at epoch" in result.stderr
    got = json.loads(result.stdout)
    for timing in ("seconds", "tokens_per_second"):
        got.pop(timing)
    assert_same_json(json.dumps(got), expected(f"{name}.resume-json.txt"))
    assert got["steps"] == 22
    assert_same_text(invoke("eval", f"{name}/model.pt", "test.txt", "--debug", "2", "--device", "cpu").stdout,
                     expected(f"{name}.resume-eval-debug2.txt"))
