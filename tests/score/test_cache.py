"""The continuous cache against a per-position reference written with plain Python sums."""

import math

import pytest
import torch

from rnnlm_cli.score.cache import NeuralCache

VOCAB = 5


def reference(features, targets, model_logprobs, size, theta, weight):
    """Grave et al.'s mixture one position at a time, with a full p_cache over the vocabulary."""
    feats = features.double().tolist()
    ys = targets.tolist()
    out = []
    for t, y in enumerate(ys):
        window = range(max(0, t - size), t)
        if not window:
            out.append(float(model_logprobs[t]))
            continue
        mass = [0.0] * VOCAB
        for i in window:
            dot = sum(a * b for a, b in zip(feats[t], feats[i]))
            mass[ys[i]] += math.exp(theta * dot)
        p_cache = [m / sum(mass) for m in mass]
        p = (1 - weight) * math.exp(float(model_logprobs[t])) + weight * p_cache[y]
        out.append(math.log(p))
    return torch.tensor(out, dtype=torch.float64)


def run_chunked(cache, features, targets, model_logprobs, chunk):
    pieces = []
    for start in range(0, len(targets), chunk):
        end = start + chunk
        pieces.append(cache.mix(features[start:end], targets[start:end], model_logprobs[start:end]))
    return torch.cat(pieces)


def random_stream(steps=23, dim=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(steps, dim, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, VOCAB, (steps,), generator=gen)
    logits = torch.randn(steps, VOCAB, generator=gen, dtype=torch.float64)
    model_logprobs = logits.log_softmax(-1).gather(1, targets.unsqueeze(1)).squeeze(1)
    return features, targets, model_logprobs


@pytest.mark.parametrize("size", [100, 6, 1])
@pytest.mark.parametrize("chunk", [1, 3, 7, 23])
def test_matches_reference_for_any_chunking(size, chunk):
    features, targets, model_logprobs = random_stream()
    expected = reference(features, targets, model_logprobs, size, theta=0.7, weight=0.3)
    actual = run_chunked(NeuralCache(size, 0.7, 0.3), features, targets, model_logprobs, chunk)
    assert actual.dtype == torch.float64
    assert torch.allclose(actual, expected, atol=1e-6, rtol=0)


def test_window_truncation_changes_the_answer():
    features, targets, model_logprobs = random_stream()
    short = run_chunked(NeuralCache(6, 0.7, 0.3), features, targets, model_logprobs, 5)
    long = run_chunked(NeuralCache(100, 0.7, 0.3), features, targets, model_logprobs, 5)
    # Up to position 6 the windows are the same; beyond it the short one has forgotten.
    assert torch.equal(short[:7], long[:7])
    assert (short[7:] - long[7:]).abs().max() > 1e-2


def test_identical_features_give_empirical_frequencies():
    # Equal features weigh every entry alike: p_cache(y) = count of y in window / window length.
    targets = torch.tensor([0, 1, 0, 0, 2, 0])
    features = torch.ones(6, 3)
    model_logprobs = torch.full((6,), math.log(0.1), dtype=torch.float64)
    cache = NeuralCache(size=3, theta=2.0, weight=0.5)
    actual = torch.cat([cache.mix(features[:2], targets[:2], model_logprobs[:2]),
                        cache.mix(features[2:], targets[2:], model_logprobs[2:])])
    # Windows: -, [0], [0 1], [0 1 0], [1 0 0], [0 0 2]; 0.5 * 0.1 from the model throughout.
    p = [0.1, 0.05, 0.05 + 0.5 / 2, 0.05 + 0.5 * 2 / 3, 0.05, 0.05 + 0.5 * 2 / 3]
    assert torch.allclose(actual, torch.tensor(p, dtype=torch.float64).log(), atol=1e-12, rtol=0)


def test_weight_one_is_the_cache_alone():
    targets = torch.tensor([3, 3, 1, 3])
    features = torch.zeros(4, 2)
    model_logprobs = torch.full((4,), -1.0, dtype=torch.float64)
    actual = NeuralCache(size=10, theta=1.0, weight=1.0).mix(features, targets, model_logprobs)
    # Position 0 has no window; position 2's target never came before.
    expected = torch.tensor([-1.0, 0.0, float("-inf"), math.log(2 / 3)], dtype=torch.float64)
    assert torch.allclose(actual, expected, atol=1e-12, rtol=0)


def test_first_position_is_the_model_exactly():
    features, targets, model_logprobs = random_stream()
    model_logprobs = model_logprobs.float()
    cache = NeuralCache(4, 0.7, 0.5)
    first = cache.mix(features[:5], targets[:5], model_logprobs[:5])
    assert first[0].item() == model_logprobs[0].item()
    assert first[1].item() != model_logprobs[1].item()
    cache.reset()
    assert len(cache) == 0
    again = cache.mix(features[5:8], targets[5:8], model_logprobs[5:8])
    assert again[0].item() == model_logprobs[5].item()


def test_weight_zero_is_identity():
    features, targets, model_logprobs = random_stream()
    model_logprobs = model_logprobs.float()
    actual = run_chunked(NeuralCache(8, 3.0, 0.0), features, targets, model_logprobs, 4)
    assert actual.dtype == model_logprobs.dtype
    assert torch.equal(actual, model_logprobs)


def test_memory_holds_the_newest_size_entries():
    features, targets, model_logprobs = random_stream()
    cache = NeuralCache(5, 0.7, 0.3)
    for start in range(0, 23, 3):
        end = start + 3
        cache.mix(features[start:end], targets[start:end], model_logprobs[start:end])
        assert cache._keys.shape[0] == cache._targets.shape[0] == len(cache) == min(end, 23, 5)
    assert torch.equal(cache._keys, features[-5:])
    assert torch.equal(cache._targets, targets[-5:])
    # A chunk longer than the cache keeps only its own tail.
    cache.mix(features, targets, model_logprobs)
    assert len(cache) == 5 and torch.equal(cache._targets, targets[-5:])


def test_bf16_features_are_cast():
    features, targets, model_logprobs = random_stream()
    rounded = features.to(torch.bfloat16)
    expected = reference(rounded.double(), targets, model_logprobs, 6, 0.7, 0.3)
    actual = run_chunked(NeuralCache(6, 0.7, 0.3), rounded, targets, model_logprobs, 7)
    assert torch.allclose(actual, expected, atol=1e-6, rtol=0)
    assert not cache_requires_grad(features, targets, model_logprobs)


def cache_requires_grad(features, targets, model_logprobs):
    cache = NeuralCache(6, 0.7, 0.3)
    cache.mix(features.clone().requires_grad_(), targets, model_logprobs)
    return cache._keys.requires_grad


@pytest.mark.parametrize("size, theta, weight", [
    (0, 1.0, 0.5), (3, -0.1, 0.5), (3, float("nan"), 0.5), (3, float("inf"), 0.5),
    (3, 1.0, -0.01), (3, 1.0, 1.01), (3, 1.0, float("nan")),
])
def test_rejects_bad_settings(size, theta, weight):
    with pytest.raises(ValueError):
        NeuralCache(size, theta, weight)


def test_rejects_mismatched_shapes():
    cache = NeuralCache(3, 1.0, 0.5)
    with pytest.raises(ValueError):
        cache.mix(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long), torch.zeros(4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    features, targets, model_logprobs = random_stream()
    expected = run_chunked(NeuralCache(6, 0.7, 0.3), features, targets, model_logprobs, 7)
    cache = NeuralCache(6, 0.7, 0.3)
    actual = run_chunked(cache, features.float().cuda(), targets.cuda(), model_logprobs.cuda(), 7)
    assert actual.device.type == "cuda" and cache._keys.device.type == "cuda"
    assert torch.allclose(actual.cpu(), expected, atol=1e-4, rtol=0)
