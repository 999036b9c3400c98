"""Model layer: fused and reference cores agree, match the equations, and the LM behaves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.errors import UsageError
from rnnlm_cli.models.lm import build_model, detach_state, parameter_count, select_state
from rnnlm_cli.models.registry import (CELLS, CellSpec, build_recurrent, register_cell, registered_cell,
                                       unregister_cell)

TORCH_CELLS = ("lstm", "gru", "rnn")
"""The cells with torch modules of their own: their names, shapes and equations are torch's."""
REGISTERED = tuple(CELLS)
"""Every registered cell, for what any cell must do (a cell added to the registry is tested here)."""
STATE_COUNT = {name: spec.state_count for name, spec in CELLS.items()}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _pair(cell: str, input_size: int = 5, hidden: int = 7, layers: int = 3, dropout: float = 0.0):
    """A fused and a reference core holding the same weights, in float64."""
    torch.manual_seed(0)
    fused = build_recurrent(cell, "fused", input_size, hidden, layers, dropout).double()
    ref = build_recurrent(cell, "reference", input_size, hidden, layers, dropout).double()
    ref.load_state_dict(fused.state_dict(), strict=True)
    return fused, ref


def _random_state(cell: str, layers: int, batch: int, hidden: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.randn(layers, batch, hidden, dtype=torch.float64) for _ in range(STATE_COUNT[cell]))


# --- fused vs reference -------------------------------------------------------------------

@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_reference_has_torch_parameter_names_and_shapes(cell):
    torch_module = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](5, 7, 2)
    want = {name: tuple(p.shape) for name, p in torch_module.named_parameters()}
    _, ref = _pair(cell, input_size=5, hidden=7, layers=2)
    got = {name: tuple(p.shape) for name, p in ref.named_parameters()}
    assert list(got) == list(want)
    assert got == want
    assert got["weight_ih_l0"] == (GATES[cell] * 7, 5)
    torch_module.load_state_dict(ref.state_dict(), strict=True)


@pytest.mark.parametrize("cell", REGISTERED)
def test_fused_and_reference_agree_forward_and_backward(cell):
    fused, ref = _pair(cell)
    torch.manual_seed(1)
    x = torch.randn(6, 4, 5, dtype=torch.float64)
    state = _random_state(cell, 3, 4, 7)
    probe = torch.randn(6, 4, 7, dtype=torch.float64)
    probe_state = [torch.randn(3, 4, 7, dtype=torch.float64) for _ in state]

    results = []
    for core in (fused, ref):
        xi = x.clone().requires_grad_(True)
        si = tuple(s.clone().requires_grad_(True) for s in state)
        y, new_state = core(xi, si)
        assert isinstance(new_state, tuple) and len(new_state) == STATE_COUNT[cell]
        loss = (y * probe).sum() + sum((s * p).sum() for s, p in zip(new_state, probe_state))
        loss.backward()
        grads = {name: p.grad.clone() for name, p in core.named_parameters()}
        results.append((y.detach(), [s.detach() for s in new_state], xi.grad, [s.grad for s in si], grads))

    (y_f, s_f, gx_f, gs_f, gp_f), (y_r, s_r, gx_r, gs_r, gp_r) = results
    torch.testing.assert_close(y_r, y_f, atol=1e-10, rtol=1e-8)
    for a, b in zip(s_r, s_f):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(gx_r, gx_f, atol=1e-10, rtol=1e-8)
    for a, b in zip(gs_r, gs_f):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)
    assert gp_r.keys() == gp_f.keys()
    for name in gp_f:
        torch.testing.assert_close(gp_r[name], gp_f[name], atol=1e-10, rtol=1e-8, msg=name)


@pytest.mark.parametrize("impl", ("fused", "reference"))
@pytest.mark.parametrize("cell", REGISTERED)
def test_dropout_only_between_layers_and_only_in_training(cell, impl):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5)
    one_layer = build_recurrent(cell, impl, 5, 8, 1, 0.5).train()
    state1 = tuple(torch.zeros(1, 3, 8) for _ in range(STATE_COUNT[cell]))
    torch.testing.assert_close(one_layer(x, state1)[0], one_layer(x, state1)[0], atol=0, rtol=0)

    two_layers = build_recurrent(cell, impl, 5, 8, 2, 0.5)
    state2 = tuple(torch.zeros(2, 3, 8) for _ in range(STATE_COUNT[cell]))
    assert not torch.equal(two_layers(x, state2)[0], two_layers(x, state2)[0])
    two_layers.eval()
    torch.testing.assert_close(two_layers(x, state2)[0], two_layers(x, state2)[0], atol=0, rtol=0)


# --- reference cells against the equations, computed independently in numpy ---------------

def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _numpy_step(cell, x, state, w_ih, w_hh, b_ih, b_hh):
    """One step from torch's documented equations; weights sliced per gate by hand."""
    H = w_hh.shape[1]
    gate = lambda w, k: w[k * H:(k + 1) * H]  # noqa: E731
    if cell == "lstm":
        h, c = state
        pre = [gate(w_ih, k) @ x + gate(b_ih, k) + gate(w_hh, k) @ h + gate(b_hh, k) for k in range(4)]
        i, f, g, o = _sigmoid(pre[0]), _sigmoid(pre[1]), np.tanh(pre[2]), _sigmoid(pre[3])
        c_new = f * c + i * g
        return o * np.tanh(c_new), c_new
    (h,) = state
    if cell == "gru":
        r = _sigmoid(gate(w_ih, 0) @ x + gate(b_ih, 0) + gate(w_hh, 0) @ h + gate(b_hh, 0))
        z = _sigmoid(gate(w_ih, 1) @ x + gate(b_ih, 1) + gate(w_hh, 1) @ h + gate(b_hh, 1))
        n = np.tanh(gate(w_ih, 2) @ x + gate(b_ih, 2) + r * (gate(w_hh, 2) @ h + gate(b_hh, 2)))
        return ((1 - z) * n + z * h,)
    return (np.tanh(w_ih @ x + b_ih + w_hh @ h + b_hh),)


@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_reference_matches_equations_by_hand(cell):
    torch.manual_seed(2)
    ref = build_recurrent(cell, "reference", 3, 2, 2, 0.0).double()
    x = torch.randn(2, 1, 3, dtype=torch.float64)  # two steps, one stream
    state = _random_state(cell, 2, 1, 2)
    y, new_state = ref(x, state)

    w = {k: v.numpy() for k, v in ref.state_dict().items()}
    layer_states = [tuple(s[layer, 0].numpy() for s in state) for layer in range(2)]
    outputs = []
    for t in range(2):
        inp = x[t, 0].numpy()
        for layer in range(2):
            layer_states[layer] = _numpy_step(cell, inp, layer_states[layer], w[f"weight_ih_l{layer}"],
                                              w[f"weight_hh_l{layer}"], w[f"bias_ih_l{layer}"], w[f"bias_hh_l{layer}"])
            inp = layer_states[layer][0]
        outputs.append(inp)
    np.testing.assert_allclose(y[:, 0].detach().numpy(), np.stack(outputs), atol=1e-12)
    for k in range(STATE_COUNT[cell]):
        np.testing.assert_allclose(new_state[k][:, 0].detach().numpy(),
                                   np.stack([layer_states[layer][k] for layer in range(2)]), atol=1e-12)


# --- registry ----------------------------------------------------------------------------

def test_registry_lists_cells_and_rejects_unknown():
    assert {"lstm", "gru", "rnn", "mogrifier"} <= set(CELLS)
    assert [CELLS[c].state_count for c in TORCH_CELLS] == [2, 1, 1]
    assert [CELLS[c].gates for c in TORCH_CELLS] == [GATES[c] for c in TORCH_CELLS]
    # The exported graph's state names (h0/c0 in, hn/cn out) come from these.
    assert [CELLS[c].state_names for c in TORCH_CELLS] == [("h", "c"), ("h",), ("h",)]
    assert (CELLS["mogrifier"].state_names, CELLS["mogrifier"].config_options) == (("h", "c"), ("mogrifier_rounds",))
    assert isinstance(build_recurrent("rnn", "fused", 3, 4, 1, 0.0), nn.RNN)
    assert build_recurrent("rnn", "fused", 3, 4, 1, 0.0).nonlinearity == "tanh"
    with pytest.raises(UsageError, match="transformer"):
        build_recurrent("transformer", "fused", 3, 4, 1, 0.0)
    with pytest.raises(UsageError, match="cudnn"):
        build_recurrent("lstm", "cudnn", 3, 4, 1, 0.0)


def test_register_cell_adds_a_buildable_cell_once():
    gru = CELLS["gru"]
    spec = CellSpec(gates=3, state_names=("h",), fused=gru.fused, reference=gru.reference)
    register_cell("test-gru-alias", spec)
    try:
        core = build_recurrent("test-gru-alias", "reference", 3, 4, 1, 0.0)
        y, (h,) = core(torch.randn(2, 1, 3), (torch.zeros(1, 1, 4),))
        assert y.shape == (2, 1, 4) and h.shape == (1, 1, 4)
        assert ModelConfig(vocab_size=5, cell="test-gru-alias").state_count == 1
        with pytest.raises(ValueError):
            register_cell("test-gru-alias", spec)
    finally:
        assert unregister_cell("test-gru-alias") is spec
    with pytest.raises(UsageError, match="test-gru-alias"):
        ModelConfig(vocab_size=5, cell="test-gru-alias")
    with registered_cell("test-gru-alias", spec):
        assert CELLS["test-gru-alias"] is spec
    assert "test-gru-alias" not in CELLS


@pytest.mark.parametrize("bad, match", [
    (dict(gates=0), "gate"),
    (dict(state_names=()), "state names"),
    (dict(state_names=("h", "h")), "state names"),
    (dict(state_names=("h", "c 0")), "state names"),
    (dict(state_names=("h", "mem")), "taken"),
])
def test_a_spec_the_rest_of_rnnlm_could_not_use_is_refused(bad, match):
    values = dict(gates=1, state_names=("h",), fused=CELLS["rnn"].fused, reference=CELLS["rnn"].reference)
    with pytest.raises(ValueError, match=match):
        CellSpec(**{**values, **bad})


def test_a_cell_option_must_be_a_model_config_field():
    spec = CellSpec(gates=1, state_names=("h",), fused=CELLS["rnn"].fused, reference=CELLS["rnn"].reference,
                    config_options=("no_such_field",))
    with registered_cell("test-odd-options", spec), pytest.raises(ValueError, match="no_such_field"):
        ModelConfig(vocab_size=5, cell="test-odd-options")


# --- the language model ------------------------------------------------------------------

def _config(**overrides) -> ModelConfig:
    values = dict(vocab_size=11, cell="lstm", impl="fused", emb=6, hidden=8, layers=2, dropout=0.0, tied=False)
    values.update(overrides)
    return ModelConfig(**values)


@pytest.mark.parametrize("cell", REGISTERED)
def test_lm_shapes_and_state_keys(cell):
    model = build_model(_config(cell=cell))
    assert model.config.cell == cell
    logits, state = model(torch.randint(0, 11, (5, 3)))
    assert logits.shape == (5, 3, 11)
    assert len(state) == STATE_COUNT[cell] and all(s.shape == (2, 3, 8) for s in state)
    keys = set(model.state_dict())
    assert {"embedding.weight", "rnn.weight_ih_l0", "rnn.bias_hh_l1", "decoder.weight", "decoder.bias"} <= keys
    assert not any(k.startswith("proj.") for k in keys)
    features, _ = model.hidden_states(torch.randint(0, 11, (5, 3)))
    assert features.shape == (5, 3, 8)
    assert model.decoder.bias.abs().max() == 0
    assert model.embedding.weight.abs().max() <= 0.1


def test_lm_tied_shares_one_tensor_and_projects_when_sizes_differ():
    same = build_model(_config(tied=True, emb=8, hidden=8))
    assert same.decoder.weight is same.embedding.weight and same.proj is None

    model = build_model(_config(tied=True, emb=6, hidden=8))
    assert model.decoder.weight is model.embedding.weight
    assert model.proj is not None and (model.proj.in_features, model.proj.out_features) == (8, 6)
    features, _ = model.hidden_states(torch.randint(0, 11, (4, 2)))
    assert features.shape == (4, 2, 6)
    assert model(torch.randint(0, 11, (4, 2)))[0].shape == (4, 2, 11)
    untied = build_model(_config(tied=False, emb=6, hidden=8))
    assert parameter_count(model) == parameter_count(untied) - 11 * 8 + 8 * 6 + 6

    # A saved tied model reloads (strictly) into a fresh one, still tied, with equal outputs.
    fresh = build_model(_config(tied=True, emb=6, hidden=8))
    fresh.load_state_dict(model.state_dict())
    assert fresh.decoder.weight is fresh.embedding.weight
    tokens = torch.randint(0, 11, (4, 2))
    torch.testing.assert_close(fresh(tokens)[0], model(tokens)[0])


@pytest.mark.parametrize("cell", REGISTERED)
def test_lm_state_dict_moves_between_implementations(cell):
    torch.manual_seed(3)
    fused = build_model(_config(cell=cell, tied=True)).double().eval()
    ref = build_model(_config(cell=cell, tied=True, impl="reference")).double().eval()
    ref.load_state_dict(fused.state_dict(), strict=True)
    tokens = torch.randint(0, 11, (7, 3))
    state = _random_state(cell, 2, 3, 8)
    (lf, sf), (lr, sr) = fused(tokens, state), ref(tokens, state)
    torch.testing.assert_close(lr, lf, atol=1e-10, rtol=1e-8)
    for a, b in zip(sr, sf):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("impl", ("fused", "reference"))
@pytest.mark.parametrize("cell", REGISTERED)
def test_state_carried_across_calls_equals_one_call(cell, impl):
    torch.manual_seed(4)
    model = build_model(_config(cell=cell, impl=impl, dropout=0.3)).double().eval()
    tokens = torch.randint(0, 11, (9, 3))
    whole, whole_state = model(tokens)
    first, state = model(tokens[:4])
    second, state = model(tokens[4:], detach_state(state))
    torch.testing.assert_close(torch.cat([first, second]), whole, atol=1e-10, rtol=1e-8)
    for a, b in zip(state, whole_state):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_none_state_is_zeros_and_init_state_follows_model_dtype():
    model = build_model(_config()).double()
    state = model.init_state(3)
    assert len(state) == 2 and all(s.dtype == torch.float64 and s.shape == (2, 3, 8) for s in state)
    assert all(s.abs().max() == 0 for s in state)
    assert model.init_state(1, dtype=torch.float32)[0].dtype == torch.float32
    tokens = torch.randint(0, 11, (3, 3))
    torch.testing.assert_close(model(tokens)[0], model(tokens, state)[0], atol=0, rtol=0)


def test_dropout_active_in_training_only():
    torch.manual_seed(5)
    model = build_model(_config(dropout=0.5, layers=1))
    tokens = torch.randint(0, 11, (5, 2))
    model.train()
    assert not torch.equal(model(tokens)[0], model(tokens)[0])
    model.eval()
    torch.testing.assert_close(model(tokens)[0], model(tokens)[0], atol=0, rtol=0)


def test_detach_and_select_state():
    h = torch.arange(12.0).reshape(1, 4, 3).requires_grad_(True)
    c = h * 2
    detached = detach_state((h, c))
    assert all(not s.requires_grad for s in detached)
    torch.testing.assert_close(detached[1], c.detach())
    picked = select_state((h, c), torch.tensor([2, 0]))
    torch.testing.assert_close(picked[0], h.detach()[:, [2, 0]])
    torch.testing.assert_close(picked[1], c.detach()[:, [2, 0]])
    assert select_state((h,), slice(1, 3))[0].shape == (1, 2, 3)


# --- smoke training ----------------------------------------------------------------------

@pytest.mark.parametrize("impl", ("fused", "reference"))
@pytest.mark.parametrize("cell", REGISTERED)
def test_smoke_train_learns_a_repeated_pattern(cell, impl):
    torch.manual_seed(6)
    model = build_model(_config(vocab_size=7, cell=cell, impl=impl, emb=16, hidden=32, layers=1, tied=True))
    pattern = torch.tensor([0, 3, 1, 4, 1, 5, 2, 6])
    stream = pattern.repeat(4)[:, None].repeat(1, 2)  # (32, 2)
    inputs, targets = stream[:-1], stream[1:]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        logits, _ = model(inputs)
        loss = nn.functional.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])
