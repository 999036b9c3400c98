"""Dynamic evaluation's RMS rule and the rate fitted on the text: against hand computations,
causality, the fit never worse than plain scoring on its slice, and divergence backed off."""

import math

import pytest
import torch

from rnnlm_cli.score.dynamic import EPSILON_SHARE, DynamicEvaluation, adapted_parameters
from rnnlm_cli.score.dynamic_fit import Slice, StreamFit, adaptation_report, fit_dynamic, gradient_rms

from conftest import tiny_model
from eval_support import scored_logprobs as token_logprobs

CPU = torch.device("cpu")
LINES = ["the dog runs .", "a cat sees the dog .", "the cats see a dog .", "the dog runs .",
         "a dog sees the cat .", "the cat runs ."]


def stream_segments(tokenizer, lines, segment):
    """(inputs (T, 1), targets (T,), fresh) segments of the text as one stream from <eos>."""
    targets = [t for line in lines for t in tokenizer.encode(line) + [tokenizer.eos_id]]
    inputs = [tokenizer.eos_id] + targets[:-1]
    return [(torch.tensor(inputs[i:i + segment]).unsqueeze(1), torch.tensor(targets[i:i + segment]), False)
            for i in range(0, len(targets), segment)]


@pytest.mark.parametrize("weights", ["all", "output"])
def test_the_rms_step_is_the_papers_update_with_one_rms_a_tensor(word_tokenizer, weights):
    """theta <- theta - lr g / (rms + eps) + min(decay rms / mean(rms), 1) (theta_0 - theta),
    per tensor; mean(rms) over the adapted weights, eps a tenth of it; in float64 here."""
    model = tiny_model(word_tokenizer.vocab_size)
    params = adapted_parameters(model, weights)
    names = [name for name, p in model.named_parameters() if any(p is q for q in params)]
    assert names == ([name for name, _ in model.named_parameters()] if weights == "all"
                     else [name for name, _ in model.named_parameters() if name.startswith("decoder.")])
    rms = [0.01 * (index + 1) for index in range(len(params))]
    rms[-1] = 50.0  # a tensor whose pull would pass 1: clipped to 1
    lr, decay = 0.05, 0.3
    dynamic = DynamicEvaluation(model, lr, decay, rms, weights)
    x, y, _ = stream_segments(word_tokenizer, LINES[:2], 50)[0]
    expected = [p.detach().double().clone() for p in params]
    trained = [p.clone() for p in expected]
    mean = sum(r * p.numel() for r, p in zip(rms, params)) / sum(p.numel() for p in params)
    for _ in range(2):  # twice: the pull then acts on weights that have moved
        with dynamic.scoring():
            features, _state = model.hidden_states(x)
            loss = -model.target_logprobs(features[:, 0], y).mean()
            grads = torch.autograd.grad(loss, params, retain_graph=True)
            dynamic.adapt(loss)
        for e, g, r, t in zip(expected, grads, rms, trained):
            e -= lr * g.double() / (r + EPSILON_SHARE * mean)
            e += min(decay * r / mean, 1.0) * (t - e)
        for p, e in zip(params, expected):
            assert p.detach().double() == pytest.approx(e, abs=1e-6)
            e.copy_(p.detach().double())
    assert dynamic.steps == 2 and dynamic.rule == "rms"
    fresh = tiny_model(word_tokenizer.vocab_size).state_dict()
    assert all(torch.equal(value, fresh[name]) for name, value in model.state_dict().items() if name not in names)
    assert params[-1].detach().double() == pytest.approx(trained[-1])  # pulled all the way back


@pytest.mark.parametrize("weights", ["all", "output"])
def test_the_gradient_rms_is_the_root_mean_square_over_segments_and_weights(word_tokenizer, weights):
    model = tiny_model(word_tokenizer.vocab_size)
    segments = stream_segments(word_tokenizer, LINES, 5)
    params = adapted_parameters(model, weights)
    got = gradient_rms(Slice(model, segments, model.init_state(1)), params, None)
    sums = [0.0] * len(params)
    state = model.init_state(1)
    for x, y, _ in segments:
        logits, state = model(x, state)
        state = tuple(s.detach() for s in state)
        logp = torch.log_softmax(logits[:, 0].float(), -1)[torch.arange(len(y)), y]
        for i, grad in enumerate(torch.autograd.grad(-logp.mean(), params)):
            sums[i] += float((grad.double() ** 2).mean())
    assert got == pytest.approx([math.sqrt(total / len(segments)) for total in sums], rel=1e-5)


@pytest.mark.parametrize("rule", ["rms", "sgd"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fitted_rate_is_never_worse_than_plain_scoring_on_its_slice(word_tokenizer, rule, seed):
    model = tiny_model(word_tokenizer.vocab_size, seed=seed)
    trained = [p.detach().clone() for p in model.parameters()]
    segments = stream_segments(word_tokenizer, LINES * 3, 4)
    fit, dynamic = fit_dynamic(Slice(model, segments, model.init_state(1)), rule=rule, weights="all", segment=4)
    assert fit.fitted_ppl <= fit.plain_ppl
    tried = dict(fit.tried)
    if fit.lr is None:
        assert dynamic is None and fit.fitted_ppl == fit.plain_ppl
        assert all(torch.equal(p, t) for p, t in zip(model.parameters(), trained))
    else:
        assert tried[fit.lr] == pytest.approx(fit.fitted_ppl)
        assert all(ppl is None or ppl >= fit.fitted_ppl - 1e-9 for ppl in tried.values())
        dynamic.restore()
    assert fit.tokens == sum(y.numel() for _, y, _ in segments)


def test_a_rate_that_diverges_is_counted_and_the_search_goes_lower(word_tokenizer, monkeypatch):
    """Starting the search at an absurd rate: its trial diverges, and a lower rate is kept."""
    import rnnlm_cli.score.dynamic_fit as dynamic_fit

    monkeypatch.setitem(dynamic_fit.FIRST_RATE, "sgd", 1e4)
    monkeypatch.setattr(dynamic_fit, "MAX_TRIALS", 12)
    model = tiny_model(word_tokenizer.vocab_size)
    segments = stream_segments(word_tokenizer, LINES * 4, 4)
    fit, dynamic = fit_dynamic(Slice(model, segments, model.init_state(1)), rule="sgd")
    assert fit.tried[0] == (1e4, None)
    assert fit.diverged >= 1
    assert fit.lr is not None and fit.lr < 1e4 and math.isfinite(fit.fitted_ppl)
    assert "diverged" in fit.line("the slice")
    dynamic.restore()


def test_a_diverged_segment_is_scored_again_by_the_trained_weights_and_the_steps_get_smaller(
        tmp_path, word_tokenizer):
    text = tmp_path / "t.txt"
    text.write_text("\n".join(LINES * 3) + "\n")
    model = tiny_model(word_tokenizer.vocab_size)
    plain, plain_scores = token_logprobs(model, word_tokenizer, text)
    dynamic = DynamicEvaluation(model, 1e30)  # the first step sends the weights to infinity
    result, scores = token_logprobs(model, word_tokenizer, text, dynamic=dynamic, chunk_tokens=5)
    assert all(math.isfinite(s) for s in scores) and math.isfinite(result.ppl)
    assert dynamic.back_offs >= 1 and dynamic.lr < 1e30
    # The segment after the first step was scored by the trained weights, from the state the
    # stream had reached: as plain scoring scores it.
    assert scores[5:10] == pytest.approx(plain_scores[5:10], abs=1e-5)
    report = adaptation_report(dynamic)
    assert report.record["back_offs"] == dynamic.back_offs and "diverged" in report.line
    dynamic.restore()


@pytest.mark.parametrize("weights", ["all", "output"])
@pytest.mark.parametrize("context", ["stream", "sentence"])
@pytest.mark.parametrize("changed_line", [1, 9])
def test_no_score_depends_on_a_later_token(tmp_path, word_tokenizer, context, changed_line, weights):
    """Two texts that differ from one line on: every score before it is the same, whether the
    change falls inside the slice the rate is fitted on (line 1) or after it (line 9)."""
    texts = [LINES * 3, LINES * 3]
    texts[1] = texts[1][:changed_line] + ["a cat sees a cat ."] + texts[1][changed_line + 1:]
    scores = []
    for lines in texts:
        path = tmp_path / "t.txt"
        path.write_text("\n".join(lines) + "\n")
        model = tiny_model(word_tokenizer.vocab_size)
        fit = StreamFit("rms", weights=weights, segment=3, fit_tokens=24)
        scores.append(token_logprobs(model, word_tokenizer, path, dynamic=fit, chunk_tokens=7, context=context)[1])
        fit.restore()
    before = sum(len(line.split()) + 1 for line in texts[0][:changed_line])
    assert scores[0][:before] == scores[1][:before]
    assert scores[0][before:] != scores[1][before:]


def test_the_slice_is_scored_plainly_and_a_short_text_is_not_adapted(tmp_path, word_tokenizer):
    path = tmp_path / "t.txt"
    path.write_text("\n".join(LINES * 4) + "\n")
    model = tiny_model(word_tokenizer.vocab_size)
    _, plain = token_logprobs(model, word_tokenizer, path)
    fit = StreamFit("rms", segment=4, fit_tokens=20)
    _, adapted = token_logprobs(model, word_tokenizer, path, dynamic=fit, chunk_tokens=4)
    assert adapted[:20] == pytest.approx(plain[:20], abs=1e-6)
    assert fit.fit is not None and fit.fit.tokens == 20
    fit.restore()

    short = StreamFit("rms", segment=4, fit_tokens=10_000)
    _, scores = token_logprobs(model, word_tokenizer, path, dynamic=short, chunk_tokens=4)
    assert scores == pytest.approx(plain, abs=1e-6)
    report = adaptation_report(short)
    assert report.record["lr"] is None and "shorter than" in report.line


def test_the_sentence_context_starts_each_line_afresh_and_adapts_across_lines(tmp_path, word_tokenizer):
    path = tmp_path / "t.txt"
    path.write_text("\n".join(LINES) + "\n")
    lr = 0.5
    model = tiny_model(word_tokenizer.vocab_size)
    _, got = token_logprobs(model, word_tokenizer, path, dynamic=DynamicEvaluation(model, lr), chunk_tokens=50,
                            context="sentence")
    reference = tiny_model(word_tokenizer.vocab_size)
    expected = []
    for line in LINES:
        targets = word_tokenizer.encode(line) + [word_tokenizer.eos_id]
        x = torch.tensor([word_tokenizer.eos_id] + targets[:-1]).unsqueeze(1)
        y = torch.tensor(targets)
        logits, _ = reference(x, reference.init_state(1))  # a fresh state every line
        logp = torch.log_softmax(logits[:, 0].float(), -1)[torch.arange(len(y)), y]
        expected.extend(logp.tolist())
        grads = torch.autograd.grad(-logp.mean(), list(reference.parameters()))
        with torch.no_grad():
            for p, g in zip(reference.parameters(), grads):
                p -= lr * g
    assert got == pytest.approx(expected, abs=1e-5)


def test_the_decoder_adapts_every_segment_over_features_the_trained_layers_give(tmp_path, word_tokenizer):
    """With only the output weights adapting, the recurrent layers run once over each chunk;
    the decoder steps every segment within it: as a loop over the whole text's trained
    features that steps the decoder every 5 tokens."""
    path = tmp_path / "t.txt"
    path.write_text("\n".join(LINES) + "\n")
    lr, decay, segment = 0.7, 0.05, 5
    model = tiny_model(word_tokenizer.vocab_size)
    dynamic = DynamicEvaluation(model, lr, decay, weights="output", segment=segment)
    assert dynamic.features_fixed
    _, got = token_logprobs(model, word_tokenizer, path, dynamic=dynamic, chunk_tokens=256)

    reference = tiny_model(word_tokenizer.vocab_size)
    decoder = list(reference.decoder.parameters())
    trained = [p.detach().clone() for p in decoder]
    (x, y, _), = stream_segments(word_tokenizer, LINES, 1000)
    with torch.no_grad():
        features = reference.hidden_states(x)[0][:, 0]
    expected = []
    for start in range(0, len(y), segment):
        logits = reference.decoder(features[start:start + segment])
        logp = torch.log_softmax(logits.float(), -1)[torch.arange(len(y[start:start + segment])), y[start:start + segment]]
        expected.extend(logp.tolist())
        grads = torch.autograd.grad(-logp.mean(), decoder)
        with torch.no_grad():
            for p, g, p0 in zip(decoder, grads, trained):
                p -= lr * g
                p += decay * (p0 - p)
    assert got == pytest.approx(expected, abs=1e-5)
    assert dynamic.steps == math.ceil(len(y) / segment)


def test_a_tied_decoder_moves_the_features_so_they_are_recomputed_every_segment(word_tokenizer):
    model = tiny_model(word_tokenizer.vocab_size, tied=True)
    assert not DynamicEvaluation(model, 0.1, weights="output").features_fixed
    assert DynamicEvaluation(tiny_model(word_tokenizer.vocab_size), 0.1, weights="output").features_fixed
    assert not DynamicEvaluation(tiny_model(word_tokenizer.vocab_size), 0.1, weights="all").features_fixed
