"""Mixed precision and the fused optimizers: what each setting turns on, and that the fast
paths compute what the plain ones do."""

import json

import pytest
import torch
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.config import TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.device import amp_enabled, cpu_bf16_kernels, native_bf16
from rnnlm_cli.errors import UsageError
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.models.lm import adaptive_target_logprobs
from rnnlm_cli.train.optimizers import make_optimizer

CPU = torch.device("cpu")


NEEDS_CPU_BF16 = pytest.mark.skipif(not cpu_bf16_kernels(), reason="this CPU's kernels cannot compute in bf16")


def test_amp_modes():
    assert not amp_enabled("off", CPU)
    if cpu_bf16_kernels():
        assert amp_enabled("bf16", CPU)
    else:
        with pytest.raises(UsageError, match="no bf16 instructions"):
            amp_enabled("bf16", CPU)
    assert amp_enabled("auto", CPU) == native_bf16(CPU)
    # Only CUDA and CPU autocast to bf16 here; other devices stay float32 whatever is asked.
    assert not amp_enabled("bf16", torch.device("mps"))
    assert not native_bf16(torch.device("mps"))


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_fused_optimizer_steps_like_the_plain_one(name):
    torch.manual_seed(0)
    config = TrainConfig(optimizer=name, lr=0.01, weight_decay=0.01)
    model = build_model(ModelConfig(vocab_size=30, emb=8, hidden=8, layers=1, dropout=0.0))
    twin = build_model(ModelConfig(vocab_size=30, emb=8, hidden=8, layers=1, dropout=0.0))
    twin.load_state_dict(model.state_dict())
    fused = make_optimizer(model, config)
    assert fused.defaults["fused"] is True
    plain = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name](
        twin.parameters(), lr=0.01, weight_decay=0.01, foreach=False)
    tokens = torch.randint(0, 30, (6, 3))
    for _ in range(3):
        for net, optimizer in ((model, fused), (twin, plain)):
            scores, _ = net(tokens[:-1], targets=tokens[1:])
            optimizer.zero_grad()
            (-scores.mean()).backward()
            optimizer.step()
    for mine, theirs in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(mine, theirs, atol=1e-6)


def test_bf16_rows_are_padded_to_few_shapes_and_padding_changes_no_score():
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=300, emb=16, hidden=16, layers=1, dropout=0.0,
                                    adaptive_softmax="40,120")).eval()
    softmax = model.decoder
    shapes = set()
    hook = softmax.head.register_forward_pre_hook(lambda module, args: shapes.add(args[0].shape[0]))
    features, targets = torch.randn(200, 16), torch.randint(0, 300, (200,))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        whole = adaptive_target_logprobs(softmax, features, targets)
        for count in range(100, 131):
            part = adaptive_target_logprobs(softmax, features[:count], targets[:count])
            assert part.shape == (count,)
            # A row's score does not depend on the rows beside it, padding included.
            assert torch.allclose(part, whole[:count], atol=1e-3)
    hook.remove()
    assert 200 in shapes or 208 in shapes
    # 31 row counts from 100 to 130 reach the head as at most 3 shapes (steps of 8 and 16).
    assert len(shapes - {200, 208}) <= 3, shapes


@pytest.fixture
def trained(tmp_path):
    from rnnlm_cli.store.checkpoint import save_checkpoint
    from rnnlm_cli.config import TokenizerConfig
    from rnnlm_cli.text.corpus import encode_corpus

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(["the dog runs .", "a cat sees the dog .", "the cats run ."] * 10) + "\n")
    tokenizer = encode_corpus(str(corpus), str(tmp_path / "c.tok"), config=TokenizerConfig(kind="word")).tokenizer
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, emb=16, hidden=16, layers=1, dropout=0.0))
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, tokenizer.to_dict(), metrics={})
    return path, corpus


@NEEDS_CPU_BF16
def test_eval_amp_bf16_scores_close_to_float32_and_off_is_the_default(trained):
    path, corpus = trained
    runner = CliRunner()

    def ppl(*options):
        result = runner.invoke(app, ["eval", str(path), str(corpus), "--json", "--device", "cpu", *options])
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)["ppl"]

    exact = ppl()
    assert ppl("--amp", "off") == exact
    for context in ("stream", "sentence"):
        rounded, plain = ppl("--amp", "bf16", "--context", context), ppl("--context", context)
        # bf16 rounds each product to 8 significant bits: perplexity moves, by well under 1%.
        assert rounded != plain
        assert rounded == pytest.approx(plain, rel=0.01)


def test_eval_refuses_an_unknown_amp(trained):
    path, corpus = trained
    result = CliRunner().invoke(app, ["eval", str(path), str(corpus), "--amp", "fp8"])
    assert result.exit_code == 2
    assert "--amp must be one of auto, bf16, off" in result.stderr
