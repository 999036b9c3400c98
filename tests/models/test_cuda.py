"""GPU paths; skipped where there is no CUDA device (CI), run by bench/gpu_check.sh."""

import pytest
import torch

from rnnlm_cli.models.registry import CELLS

from rnnlm_cli.device import resolve_device

from conftest import tiny_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_picks_cuda():
    assert resolve_device("auto").type == "cuda"


@pytest.mark.parametrize("cell", list(CELLS))
def test_fused_gpu_model_matches_cpu(cell):
    model = tiny_model(30, cell=cell)
    tokens = torch.randint(0, 30, (9, 4))
    expected, _ = model(tokens)
    actual, _ = model.to("cuda")(tokens.to("cuda"))
    assert torch.allclose(actual.cpu(), expected, atol=1e-4)


def test_train_on_gpu_then_load_on_cpu(tmp_path, tiny_corpus):
    from rnnlm_cli.store.checkpoint import load_model
    from rnnlm_cli.config import TrainConfig
    from rnnlm_cli.models.config import ModelConfig
    from rnnlm_cli.train.job import TrainJob
    from rnnlm_cli.train.run import run_training

    job = TrainJob(corpus=str(tiny_corpus), out=str(tmp_path / "m.pt"),
                   model=ModelConfig(vocab_size=2, emb=8, hidden=16, layers=1),
                   train=TrainConfig(batch_size=2, bptt=5, epochs=2, device="cuda"))
    result = run_training(job)
    assert result.steps > 0
    model, _, _ = load_model(tmp_path / "m.pt", "cpu")
    assert next(model.parameters()).device.type == "cpu"


def test_same_seed_same_sample_on_gpu():
    from rnnlm_cli.config import SamplingConfig
    from rnnlm_cli.models.generate import sample_tokens

    model = tiny_model(40).to("cuda")
    device = torch.device("cuda")
    run = lambda: [int(t[0]) for t in sample_tokens(model, [1, 2], 0, SamplingConfig(max_tokens=20, seed=3), device)]
    assert run() == run()


def test_dynamic_evaluation_and_cache_on_gpu_match_cpu(tmp_path, word_tokenizer):
    """cuDNN's RNN backward runs only in training mode: dynamic evaluation scores without it."""
    from rnnlm_cli.score.cache import NeuralCache
    from rnnlm_cli.score.dynamic import DynamicEvaluation
    from rnnlm_cli.score.evaluate import score_file

    text = tmp_path / "t.txt"
    text.write_text("the dog runs .\na cat sees the dog .\n" * 5)
    results = []
    for device in ("cpu", "cuda"):
        model = tiny_model(word_tokenizer.vocab_size).to(device)
        results.append(score_file(model, word_tokenizer, str(text), torch.device(device), chunk_tokens=6,
                                  dynamic=DynamicEvaluation(model, 0.5, 0.01), cache=NeuralCache(20, 0.5, 0.2)))
    assert results[1].logprob == pytest.approx(results[0].logprob, rel=1e-4)


def test_adaptive_softmax_trains_under_bf16_autocast(tmp_path, tiny_corpus):
    from rnnlm_cli.config import TrainConfig
    from rnnlm_cli.models.config import ModelConfig
    from rnnlm_cli.train.job import TrainJob
    from rnnlm_cli.train.run import run_training

    job = TrainJob(corpus=str(tiny_corpus), valid=str(tiny_corpus), out=str(tmp_path / "m.pt"),
                   model=ModelConfig(vocab_size=2, emb=8, hidden=16, layers=1, adaptive_softmax="3,6"),
                   train=TrainConfig(batch_size=2, bptt=5, epochs=2, device="cuda", amp="bf16"))
    result = run_training(job)
    assert result.steps > 0 and result.best_valid_ppl < 1e4


def test_adaptive_target_scores_under_bf16_on_gpu_match_cpu():
    from rnnlm_cli.models.config import ModelConfig
    from rnnlm_cli.models.lm import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=400, emb=16, hidden=16, layers=1, dropout=0.0,
                                    adaptive_softmax="50,150")).eval()
    tokens, targets = torch.randint(0, 400, (12, 5)), torch.randint(0, 400, (12, 5))
    with torch.no_grad():
        expected, _ = model(tokens, targets=targets)
        model.to("cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            actual, _ = model(tokens.to("cuda"), targets=targets.to("cuda"))
    assert actual.dtype == torch.float32
    assert torch.allclose(actual.cpu(), expected, atol=0.05)
