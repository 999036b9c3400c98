"""Attention over recent outputs: carried across segments, causal, and useful at long range."""

from __future__ import annotations

import math

import pytest
import torch

from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import build_model, detach_state, select_state


def _config(**overrides) -> ModelConfig:
    values = dict(vocab_size=11, cell="lstm", emb=6, hidden=8, layers=2, dropout=0.0, attention=5)
    values.update(overrides)
    return ModelConfig(**values)


def test_state_holds_memory_and_validity_with_the_batch_on_dimension_one():
    model = build_model(_config()).double()
    state = model.init_state(3)
    assert [tuple(s.shape) for s in state] == [(2, 3, 8), (2, 3, 8), (5, 3, 8), (5, 3)]
    assert all(s.dtype == torch.float64 and s.abs().max() == 0 for s in state)
    _, state = model(torch.randint(0, 11, (3, 3)), state)
    assert state[3][:, 0].tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]  # three outputs so far
    picked = select_state(state, torch.tensor([2, 0]))
    torch.testing.assert_close(picked[2], state[2][:, [2, 0]])
    assert not any(s.requires_grad for s in detach_state(state))


@pytest.mark.parametrize("impl", ("fused", "reference"))
@pytest.mark.parametrize("cell", ("lstm", "gru"))
def test_segments_with_carried_state_equal_one_call(cell, impl):
    torch.manual_seed(0)
    model = build_model(_config(cell=cell, impl=impl, tied=True)).double().eval()
    tokens = torch.randint(0, 11, (13, 3))
    whole, whole_state = model(tokens)
    pieces, state = [], model.init_state(3)
    for start, stop in ((0, 2), (2, 9), (9, 10), (10, 13)):  # shorter and longer than the window
        logits, state = model(tokens[start:stop], detach_state(state))
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces), whole, atol=1e-10, rtol=1e-8)
    for a, b in zip(state, whole_state):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_output_at_t_does_not_depend_on_later_tokens():
    torch.manual_seed(1)
    model = build_model(_config(layers=1)).double().eval()
    tokens = torch.randint(0, 11, (8, 2))
    logits, _ = model(tokens)
    for t in range(7):
        changed = tokens.clone()
        changed[t + 1:] = (changed[t + 1:] + 1) % 11
        other, _ = model(changed)
        torch.testing.assert_close(other[: t + 1], logits[: t + 1], atol=0, rtol=0)
        assert not torch.allclose(other[t + 1], logits[t + 1])


def test_window_limits_how_far_back_attention_sees():
    torch.manual_seed(2)
    attention = build_model(_config(layers=1, attention=3)).attention.double()
    h = torch.randn(6, 1, 8, dtype=torch.float64)
    memory, valid = attention.init_memory(1, "cpu", torch.float64)
    out, _, _ = attention(h, memory, valid)
    h2 = h.clone()
    h2[1, 0, 0] += 10.0  # one unit, not all: a uniform shift is what LayerNorm removes
    # outputs at t >= 5 see only t-3 .. t
    out2, _, _ = attention(h2, memory, valid)
    torch.testing.assert_close(out2[5], out[5], atol=0, rtol=0)
    assert not torch.allclose(out2[4], out[4])
    # by hand at t = 0 with nothing in memory: attends only to itself, so the context is
    # h_0 standardised over its units
    mean, var = h[0].mean(-1, keepdim=True), h[0].var(-1, unbiased=False, keepdim=True)
    normed = (h[0] - mean) / torch.sqrt(var + attention.norm.eps)
    expected = torch.tanh(attention.combine(torch.cat([h[0], normed], dim=-1)))
    torch.testing.assert_close(out[0], expected)


VALUES, FILLERS, GAP = 4, 4, 20
KEY, QUERY = VALUES + FILLERS, VALUES + FILLERS + 1  # markers after the value and filler ids


def _recall_batch(gen: torch.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """"<key> x f_1 .. f_GAP <query> x": inputs (GAP+3, B), and the x to predict last (B,)."""
    x = torch.randint(0, VALUES, (batch,), generator=gen)
    filler = torch.randint(VALUES, VALUES + FILLERS, (GAP, batch), generator=gen)
    inputs = torch.cat([torch.full((1, batch), KEY), x[None], filler, torch.full((1, batch), QUERY)])
    return inputs, x


def _recall_after_training(attention: int, seed: int = 0, steps: int = 600) -> tuple[float, float]:
    """Train a tiny one-layer LSTM on the recall position; (loss, accuracy) on fresh data."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_model(ModelConfig(vocab_size=VALUES + FILLERS + 2, emb=8, hidden=16, layers=1,
                                    dropout=0.0, attention=attention))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        inputs, x = _recall_batch(gen, 32)
        loss = torch.nn.functional.cross_entropy(model(inputs)[0][-1], x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        inputs, x = _recall_batch(torch.Generator().manual_seed(1000 + seed), 256)
        logits = model.eval()(inputs)[0][-1]  # (B, V)
    return torch.nn.functional.cross_entropy(logits, x).item(), (logits.argmax(-1) == x).float().mean().item()


def test_attention_recalls_a_token_the_plain_lstm_cannot_carry_across_the_gap():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plain_loss, plain_accuracy = _recall_after_training(attention=0)
        loss, accuracy = _recall_after_training(attention=GAP + 2)
    finally:
        torch.set_num_threads(threads)
    chance = math.log(VALUES)
    assert plain_loss > 0.9 * chance and plain_accuracy < 0.4
    assert loss < 0.1 and accuracy > 0.95
