"""Attention over recent outputs: carried across segments, causal, and useful at long range."""

from __future__ import annotations

import pytest
import torch

from rnnlm_cli.config import ModelConfig
from rnnlm_cli.models import build_model, detach_state, select_state


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
    h2[1] += 10.0  # outputs at t >= 5 see only t-3 .. t
    out2, _, _ = attention(h2, memory, valid)
    torch.testing.assert_close(out2[5], out[5], atol=0, rtol=0)
    assert not torch.allclose(out2[4], out[4])
    # by hand at t = 0 with nothing in memory: attends only to itself, so the context is h_0
    expected = torch.tanh(attention.combine(torch.cat([h[0], h[0]], dim=-1)))
    torch.testing.assert_close(out[0], expected)
