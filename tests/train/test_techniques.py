"""Loss terms change the gradient by exactly their own gradient; bf16 autocast trains on CPU."""

import numpy as np
import pytest
import torch

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.device import cpu_bf16_kernels
from rnnlm_cli.train.objective import Objective
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.train.loop import OutputPaths, Trainer


def tiny():
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=7, emb=4, hidden=5, layers=1, dropout=0.0))
    x, y = torch.randint(0, 7, (6, 3)), torch.randint(0, 7, (6, 3))
    return model, x, y


def grads(model, x, y, pairs=None, **terms):
    objective = Objective(TrainConfig(**terms), pairs)
    model.zero_grad()
    scores, _, raw, dropped = objective.forward(model, x, y, model.init_state(3))
    objective.loss(model, scores, raw, dropped).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def hand_grads(model, term):
    model.zero_grad()
    term().backward()
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def assert_difference(model, base, with_term, expected):
    for name in base:
        assert torch.allclose(with_term[name] - base[name], expected[name], atol=1e-6), name


def test_l1_adds_lambda_times_the_sign_of_each_weight_and_nothing_to_biases():
    model, x, y = tiny()
    base, with_l1 = grads(model, x, y), grads(model, x, y, l1=0.01)
    expected = {n: (0.01 * p.sign() if p.dim() >= 2 else torch.zeros_like(p)) for n, p in model.named_parameters()}
    assert_difference(model, base, with_l1, expected)


def test_ar_and_tar_add_the_gradients_of_their_terms():
    model, x, y = tiny()
    base = grads(model, x, y)

    def raw():
        out, _ = model.rnn(model.embedding(x), model.init_state(3))  # (T, B, H)
        return out

    # dropout 0: the dropped output is the raw output
    assert_difference(model, base, grads(model, x, y, ar=2.0), hand_grads(model, lambda: 2.0 * (raw() ** 2).mean()))
    assert_difference(model, base, grads(model, x, y, tar=3.0),
                      hand_grads(model, lambda: 3.0 * ((raw()[1:] - raw()[:-1]) ** 2).mean()))


def test_synonym_loss_pulls_each_pair_together():
    model, x, y = tiny()
    pairs = torch.tensor([[1, 2], [3, 5]])
    base, with_pairs = grads(model, x, y), grads(model, x, y, pairs, synonym_weight=0.5, synonyms="s.txt")
    e = model.embedding.weight.detach()
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    # d/de_a of 0.5 * mean_P ||e_a - e_b||^2 = 0.5 * 2 (e_a - e_b) / P, and the negative for e_b
    grad = torch.zeros_like(e)
    for a, b in pairs.tolist():
        grad[a] += 0.5 * (e[a] - e[b])
        grad[b] -= 0.5 * (e[a] - e[b])
    expected["embedding.weight"] = grad
    assert_difference(model, base, with_pairs, expected)


@pytest.mark.skipif(not cpu_bf16_kernels(), reason="this CPU's kernels cannot compute in bf16")
def test_bf16_autocast_on_cpu_trains_to_a_finite_loss(tmp_path):
    torch.manual_seed(0)
    tokens = np.random.default_rng(0).integers(0, 20, size=1500).astype(np.uint16)
    model = build_model(ModelConfig(vocab_size=20, emb=8, hidden=8, layers=1, dropout=0.0))
    config = TrainConfig(batch_size=4, bptt=10, max_steps=10, device="cpu", amp="bf16")
    result = Trainer(model, tokens[:1200], tokens[1200:], {"kind": "byte", "version": 1}, config,
                     torch.device("cpu"), OutputPaths.beside(str(tmp_path / "m.pt"))).run()
    assert np.isfinite(result.best_valid_loss) and result.skipped_steps == 0
    assert all(p.dtype == torch.float32 for p in model.parameters())
