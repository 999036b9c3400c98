"""Gradient norms against distance, checked against closed forms and against each other.

* A linear RNN, h[s] = W h[s-1] + U x[s]: the gradient at distance k is (W^T)^k times the
  gradient at t, which the test computes by hand from the decoder (softmax minus one-hot).
* An LSTM whose forget gate is saturated open and whose recurrent matrix is zero carries c
  unchanged: the norm is the same at every distance.
* The reference and fused implementations of every registered cell give the same profile.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F
from typer.testing import CliRunner

from rnnlm_cli.analysis.gradients import GradientConfig, NormProfile, gradient_profile, table_distances, window_norms
from rnnlm_cli.cli import app
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.models.reference import ReferenceRecurrent
from rnnlm_cli.models.registry import CELLS, CellSpec, registered_cell
from rnnlm_cli.store.checkpoint import save_checkpoint

VOCAB, EMB, HIDDEN = 7, 5, 6


def linear_step(xw, state, weight_hh, bias_hh):
    """h' = W_ih x + b_ih + W_hh h + b_hh: no squashing, so gradients are matrix powers."""
    (h,) = state
    return (xw + F.linear(h, weight_hh, bias_hh),)


def linear_rnn(input_size, hidden_size, num_layers, dropout):
    return ReferenceRecurrent(linear_step, 1, 1, input_size, hidden_size, num_layers, dropout)


LINEAR = CellSpec(gates=1, state_names=("h",), fused=linear_rnn, reference=linear_rnn)


def model_of(cell: str, layers: int = 1, impl: str = "fused", seed: int = 0, **options):
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=VOCAB, cell=cell, impl=impl, emb=EMB, hidden=HIDDEN, layers=layers,
                         dropout=0.0, **options)
    return build_model(config).eval()


def windows_of(config: GradientConfig, batch: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (config.window, batch), generator=generator)  # (W, B)


def test_linear_rnn_gradient_is_a_matrix_power():
    config = GradientConfig(max_distance=12, warmup=3)
    windows = windows_of(config, batch=4)
    with registered_cell("linear-test", LINEAR):
        model = model_of("linear-test")
        with torch.no_grad():
            weight = model.rnn.weight_hh_l0
            # A spectral radius near 0.8: the norms fall geometrically, slowly enough to stay exact.
            weight.copy_(torch.linalg.qr(torch.randn(HIDDEN, HIDDEN, generator=torch.Generator().manual_seed(3)))[0] * 0.8)
        norms = window_norms(model, windows, config)  # (L + 1, K, B)

        # By hand: h_t from the whole window, then dL/dh_t = D^T (softmax(D h_t + b) - onehot(target)).
        with torch.no_grad():
            features, _ = model.hidden_states(windows[: config.warmup + config.max_distance + 1])
        h_t = features[-1].double()  # (B, H)
        decoder = model.decoder.weight.double()
        probs = torch.softmax(h_t @ decoder.T + model.decoder.bias.double(), dim=-1)
        target = windows[-1]
        probs[torch.arange(4), target] -= 1.0
        grad_t = probs @ decoder  # (B, H)
        w = model.rnn.weight_hh_l0.detach().double()
        expected = []
        grad = grad_t
        for _ in range(config.max_distance):
            grad = grad @ w  # (W^T)^k g as row vectors: g^T W^k
            expected.append(grad.norm(dim=-1))
        expected = torch.stack(expected)  # (K, B)
    torch.testing.assert_close(norms[0].double(), expected, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(norms[1], norms[0])  # one layer: the whole state is that layer


def test_lstm_with_open_forget_gate_and_no_recurrence_keeps_the_norm_flat():
    config = GradientConfig(max_distance=30, warmup=5)
    model = model_of("lstm")
    with torch.no_grad():
        model.rnn.weight_hh_l0.zero_()
        model.rnn.bias_ih_l0[HIDDEN:2 * HIDDEN].fill_(1e4)  # f = sigmoid(1e4) = 1 exactly in float32
    norms = window_norms(model, windows_of(config, batch=3), config)[0]  # (K, B)
    assert norms.min() > 0
    torch.testing.assert_close(norms, norms[:1].expand_as(norms), rtol=1e-6, atol=0)

    # The same LSTM with its forget gate at its usual values forgets: the check can fail.
    with torch.no_grad():
        model.rnn.bias_ih_l0[HIDDEN:2 * HIDDEN].fill_(0.0)
    forgetting = window_norms(model, windows_of(config, batch=3), config)[0]
    assert (forgetting[-1] < 1e-3 * forgetting[0]).all()


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_reference_and_fused_agree(cell):
    config = GradientConfig(max_distance=8, warmup=4)
    windows = windows_of(config, batch=3)
    fused = model_of(cell, layers=2, impl="fused")
    reference = model_of(cell, layers=2, impl="reference")
    reference.load_state_dict(fused.state_dict())
    torch.testing.assert_close(window_norms(reference, windows, config), window_norms(fused, windows, config),
                               rtol=1e-4, atol=1e-7)


def test_whole_state_norm_combines_the_layers():
    config = GradientConfig(max_distance=6, warmup=2)
    norms = window_norms(model_of("gru", layers=3), windows_of(config, batch=2), config)
    torch.testing.assert_close(norms[-1], norms[:-1].pow(2).sum(0).sqrt())


def test_attention_memory_carries_gradient_past_a_cut_recurrence():
    """With the recurrent matrix zero, h at t-k reaches the loss only through the attention memory."""
    config = GradientConfig(max_distance=6, warmup=2)
    windows = windows_of(config, batch=2)
    plain = model_of("rnn")
    attending = model_of("rnn", attention=4)
    for model in (plain, attending):
        with torch.no_grad():
            model.rnn.weight_hh_l0.zero_()
    assert window_norms(plain, windows, config)[0].abs().max() == 0
    reached = window_norms(attending, windows, config)[0]  # (K, B)
    assert (reached[:4] > 0).all()  # step t attends to itself and the 4 outputs before it
    assert (reached[4:] == 0).all()  # older outputs have left the memory

    # The step that shares the top h with the memory computes what the model computes.
    from rnnlm_cli.analysis.gradients import _step

    with torch.no_grad():
        whole, _ = attending.hidden_states(windows)
        state, steps = attending.init_state(2), []
        for t in range(windows.shape[0]):
            features, state = _step(attending, windows[t:t + 1], state)
            steps.append(features)
    torch.testing.assert_close(torch.cat(steps), whole)


def test_norm_profile_quartiles_and_reach():
    norms = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [0.1, 0.2, 0.3, 0.4, 0.5], [0.001, 0.002, 0.003, 0.004, 0.005]], dtype=torch.float64)
    profile = NormProfile.of(norms)
    assert profile.median == pytest.approx([3.0, 0.3, 0.003])
    assert profile.q1 == pytest.approx([2.0, 0.2, 0.002])
    assert profile.q3 == pytest.approx([4.0, 0.4, 0.004])
    assert profile.reach() == 3  # 0.003 <= 3.0 / 1000
    assert NormProfile.of(norms[:2]).reach() is None
    assert table_distances(100) == [1, 2, 5, 10, 20, 50, 100]
    assert table_distances(30) == [1, 2, 5, 10, 20, 30]


def test_positions_are_sampled_from_the_whole_text(tmp_path, word_tokenizer):
    """Reservoir sampling keeps a bounded number of windows, drawn from all over the text."""
    from rnnlm_cli.analysis.gradients import text_windows

    text = tmp_path / "long.txt"
    text.write_text("the dog runs .\n" * 2000, encoding="utf-8")  # 10,000 tokens
    config = GradientConfig(max_distance=8, warmup=0, positions=20, seed=5)
    windows, seen = text_windows(word_tokenizer, str(text), config)
    assert len(windows) == 20 and seen == 10_000 // config.window
    assert all(len(w) == config.window for w in windows)


def test_cli_table_json_and_plot(tmp_path, word_tokenizer, tiny_corpus):
    model = model_of("lstm")
    lstm_path, gru_path = tmp_path / "lstm.pt", tmp_path / "gru.pt"
    model = build_model(ModelConfig(vocab_size=word_tokenizer.vocab_size, cell="lstm", emb=8, hidden=8, layers=2))
    save_checkpoint(lstm_path, model, word_tokenizer.to_dict(), metrics={})
    gru = build_model(ModelConfig(vocab_size=word_tokenizer.vocab_size, cell="gru", emb=8, hidden=8, layers=1))
    save_checkpoint(gru_path, gru, word_tokenizer.to_dict(), metrics={})
    runner = CliRunner()
    args = ["analyze", "gradients", str(lstm_path), str(gru_path), str(tiny_corpus), "--max-distance", "10",
            "--warmup", "2", "--positions", "5"]
    result = runner.invoke(app, args + ["--json"], env={"RNNLM_DEBUG": None})
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    lstm, gru_report = report["models"]
    assert (lstm["cell"], len(lstm["layers"]), gru_report["cell"], len(gru_report["layers"])) == ("lstm", 2, "gru", 1)
    assert len(lstm["whole"]["median"]) == 10 and lstm["positions"] == 5

    # The library gives the same figures as the command.
    profile = gradient_profile(model.eval(), word_tokenizer, str(tiny_corpus), torch.device("cpu"),
                               GradientConfig(max_distance=10, warmup=2, positions=5))
    assert lstm["whole"]["median"] == pytest.approx(profile.whole.median, rel=1e-5)

    png = tmp_path / "reach.png"
    result = runner.invoke(app, args + ["--plot", str(png)], env={"RNNLM_DEBUG": None})
    assert result.exit_code == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "gradient reach" in result.stdout and "lstm, 2x8" in result.stdout and "all layers" in result.stdout


def test_cli_refuses_a_text_shorter_than_one_window(tmp_path, saved_model):
    path, _, _ = saved_model
    short = tmp_path / "short.txt"
    short.write_text("the dog runs .\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["analyze", "gradients", str(path), str(short)], env={"RNNLM_DEBUG": None})
    assert result.exit_code == 65
    assert "too short for --max-distance 100" in result.stderr and "Traceback" not in result.stderr
