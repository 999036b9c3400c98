"""AWD-LSTM regularisers: embedding dropout, locked dropout, weight drop, AR/TAR outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.models.registry import CELLS
from rnnlm_cli.models import regularization as reg


def _config(**overrides) -> ModelConfig:
    values = dict(vocab_size=11, cell="lstm", impl="fused", emb=6, hidden=8, layers=2, dropout=0.0)
    values.update(overrides)
    return ModelConfig(**values)


def test_embedding_dropout_drops_whole_words_and_scales_survivors():
    torch.manual_seed(0)
    weight = torch.randn(20, 5)
    tokens = torch.randint(0, 20, (30, 4))
    out = reg.embedding_dropout(weight, tokens, 0.5, training=True)  # (30, 4, 5)
    dropped, kept = set(), set()
    for position in tokens.flatten().unique().tolist():
        rows = out[tokens == position]  # every occurrence of this id
        if rows.abs().max() == 0:
            dropped.add(position)
        else:
            kept.add(position)
            torch.testing.assert_close(rows, (weight[position] * 2.0).expand_as(rows))
    assert dropped and kept
    torch.testing.assert_close(reg.embedding_dropout(weight, tokens, 0.5, training=False), weight[tokens])


def test_lm_embedding_dropout_works_tied_and_only_in_training():
    torch.manual_seed(1)
    model = build_model(_config(dropout_emb=0.5, tied=True, emb=8))
    tokens = torch.randint(0, 11, (6, 3))
    model.train()
    assert not torch.equal(model(tokens)[0], model(tokens)[0])
    model.eval()
    torch.testing.assert_close(model(tokens)[0], model(tokens)[0], atol=0, rtol=0)
    assert model.decoder.weight is model.embedding.weight


def test_locked_dropout_mask_constant_over_time_and_varies_over_batch_and_features():
    torch.manual_seed(2)
    x = torch.ones(7, 16, 32)
    y = reg.locked_dropout(x, 0.5, training=True)
    assert torch.equal(y, y[:1].expand_as(y))
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert not torch.equal(y[0, 0], y[0, 1])  # streams differ
    assert len(set(y[0, 0].tolist())) == 2  # features differ
    assert torch.equal(reg.locked_dropout(x, 0.5, training=False), x)
    plain = reg.sequence_dropout(x, 0.5, True, locked=False)
    assert not torch.equal(plain, plain[:1].expand_as(plain))


@pytest.mark.parametrize("impl", ("fused", "reference"))
def test_lm_locked_dropout_uses_one_mask_per_sequence(impl):
    torch.manual_seed(3)
    model = build_model(_config(impl=impl, locked_dropout=True, dropout=0.5)).train()
    # A constant token: the input to layer 0 is the same at every step, so with a locked
    # input mask the dropped inputs are too; an element-wise mask would make them differ.
    seen = []
    original = model.rnn.forward_layer

    def spy(layer, x, state, weight_hh=None):
        seen.append((layer, x.detach().clone()))
        return original(layer, x, state, weight_hh)

    model.rnn.forward_layer = spy
    model(torch.full((5, 4), 3))
    x0 = seen[0][1]
    assert seen[0][0] == 0 and torch.equal(x0, x0[:1].expand_as(x0))
    assert (x0 == 0).any() and not torch.equal(x0[0, 0], x0[0, 1])
    zeros = (seen[1][1] == 0)  # between layers: the zero pattern is the same at each step
    assert zeros.any() and torch.equal(zeros, zeros[:1].expand_as(zeros))


def test_weight_drop_equals_lstm_with_the_dropped_matrix_and_reaches_the_raw_weight():
    config = _config(weight_drop=0.5, layers=1)
    torch.manual_seed(4)
    model = build_model(config).double().train()
    tokens = torch.randint(0, 11, (6, 3))
    raw = model.rnn.weight_hh_l0
    torch.manual_seed(5)
    logits, _ = model(tokens)
    torch.manual_seed(5)
    mask = raw.new_empty(raw.shape).bernoulli_(0.5) * 2.0  # the mask the model drew
    lstm = nn.LSTM(6, 8).double()
    lstm.load_state_dict({name[4:]: t for name, t in model.state_dict().items() if name.startswith("rnn.")})
    with torch.no_grad():
        lstm.weight_hh_l0.mul_(mask)
        y, _ = lstm(model.embedding(tokens))
        torch.testing.assert_close(logits, model.decoder(y), atol=1e-10, rtol=1e-8)
    logits.sum().backward()
    assert raw.grad.abs().sum() > 0
    assert torch.all(raw.grad[mask == 0] == 0)
    assert set(name for name, _ in model.named_parameters()) == set(
        name for name, _ in build_model(_config(layers=1)).named_parameters())


@pytest.mark.parametrize("cell", list(CELLS))
def test_weight_drop_fused_equals_reference_and_is_off_in_eval(cell):
    torch.manual_seed(6)
    config = _config(cell=cell, weight_drop=0.4, locked_dropout=True, dropout=0.3, dropout_emb=0.2,
                     mogrifier_rounds=2)
    fused = build_model(config).double().train()
    ref = build_model(ModelConfig(**{**config.__dict__, "impl": "reference"})).double().train()
    ref.load_state_dict(fused.state_dict(), strict=True)
    tokens = torch.randint(0, 11, (5, 3))
    outs = []
    for model in (fused, ref):
        torch.manual_seed(7)
        outs.append(model(tokens)[0])
    torch.testing.assert_close(outs[1], outs[0], atol=1e-10, rtol=1e-8)
    torch.manual_seed(8)
    assert not torch.equal(fused(tokens)[0], outs[0])  # a fresh mask per forward
    fused.eval()
    ref.eval()
    torch.testing.assert_close(fused(tokens)[0], fused(tokens)[0], atol=0, rtol=0)
    torch.testing.assert_close(ref(tokens)[0], fused(tokens)[0], atol=1e-10, rtol=1e-8)


def test_weight_drop_changes_training_outputs_only():
    torch.manual_seed(9)
    model = build_model(_config(weight_drop=0.5)).train()
    plain = build_model(_config())
    plain.load_state_dict(model.state_dict())
    plain.train()
    tokens = torch.randint(0, 11, (5, 2))
    assert not torch.equal(model(tokens)[0], plain(tokens)[0])
    model.eval()
    plain.eval()
    torch.testing.assert_close(model(tokens)[0], plain(tokens)[0], atol=0, rtol=0)


def test_hidden_states_returns_raw_and_dropped_outputs():
    torch.manual_seed(10)
    model = build_model(_config(dropout=0.5, tied=True, emb=6, hidden=8)).train()
    tokens = torch.randint(0, 11, (5, 3))
    features, state, (raw, dropped) = model.hidden_states(tokens, return_outputs=True)
    assert raw.shape == dropped.shape == (5, 3, 8) and features.shape == (5, 3, 6)
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], raw[kept] * 2.0)
    torch.testing.assert_close(features, model.proj(dropped))
    torch.testing.assert_close(raw[-1], state[0][-1])  # the top layer's last h
    assert len(model.hidden_states(tokens)) == 2
