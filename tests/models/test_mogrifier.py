"""Mogrifier LSTM: 0 rounds is nn.LSTM, one round follows the paper's equation by hand."""

from __future__ import annotations

import torch
from torch import nn

from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.models.registry import build_recurrent


def test_zero_rounds_is_exactly_an_lstm():
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 7, 2).double()
    for impl in ("fused", "reference"):
        core = build_recurrent("mogrifier", impl, 5, 7, 2, 0.0, mogrifier_rounds=0).double()
        core.load_state_dict(lstm.state_dict(), strict=True)
        x = torch.randn(6, 3, 5, dtype=torch.float64)
        h, c = torch.randn(2, 3, 7, dtype=torch.float64), torch.randn(2, 3, 7, dtype=torch.float64)
        y, (hn, cn) = core(x, (h, c))
        y_want, (hn_want, cn_want) = lstm(x, (h, c))
        torch.testing.assert_close(y, y_want)
        torch.testing.assert_close(hn, hn_want)
        torch.testing.assert_close(cn, cn_want)


def test_two_rounds_follow_the_paper_by_hand():
    torch.manual_seed(1)
    core = build_recurrent("mogrifier", "fused", 3, 4, 1, 0.0, mogrifier_rounds=2).double()
    x = torch.randn(1, 2, 3, dtype=torch.float64)
    h, c = torch.randn(1, 2, 4, dtype=torch.float64), torch.randn(1, 2, 4, dtype=torch.float64)
    q, r = core.mogrifier_q_l0[0], core.mogrifier_r_l0[0]  # (3, 4), (4, 3)
    x1 = 2 * torch.sigmoid(h[0] @ q.T) * x[0]  # x^1 = 2 sigma(Q^1 h^0) * x^-1
    h2 = 2 * torch.sigmoid(x1 @ r.T) * h[0]  # h^2 = 2 sigma(R^2 x^1) * h^0
    lstm = nn.LSTM(3, 4).double()
    lstm.load_state_dict({k: v for k, v in core.state_dict().items() if not k.startswith("mogrifier")})
    _, (h_want, c_want) = lstm(x1[None], (h2[None], c))
    _, (h_got, c_got) = core(x, (h, c))
    torch.testing.assert_close(h_got, h_want)
    torch.testing.assert_close(c_got, c_want)


def test_smoke_train_mogrifier_lm():
    torch.manual_seed(2)
    model = build_model(ModelConfig(vocab_size=7, cell="mogrifier", emb=16, hidden=16, layers=1, dropout=0.0,
                                    tied=True, mogrifier_rounds=3))
    stream = torch.tensor([0, 3, 1, 4, 1, 5, 2, 6]).repeat(3)[:, None].repeat(1, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        logits, _ = model(stream[:-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 7), stream[1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
