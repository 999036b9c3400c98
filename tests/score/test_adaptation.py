"""Dynamic evaluation and the neural cache inside the scorer, against loops written here."""

import math

import pytest
import torch

from rnnlm_cli.score.cache import NeuralCache
from rnnlm_cli.score.dynamic import DynamicEvaluation
from rnnlm_cli.score.evaluate import score_file

from conftest import tiny_model
from eval_support import scored_logprobs as token_logprobs

CPU = torch.device("cpu")
LINES = ["the dog runs .", "a cat sees the dog .", "the cats see a dog .", "the dog runs ."]


def stream_ids(tokenizer, lines):
    """Inputs and targets of the whole text as one stream, starting from <eos>."""
    targets = [t for line in lines for t in tokenizer.encode(line) + [tokenizer.eos_id]]
    return [tokenizer.eos_id] + targets[:-1], targets


def test_dynamic_evaluation_scores_each_segment_before_learning_from_it(tmp_path, word_tokenizer):
    text = tmp_path / "t.txt"
    text.write_text("\n".join(LINES) + "\n")
    lr, decay, segment = 0.5, 0.1, 5
    model = tiny_model(word_tokenizer.vocab_size)
    result, got = token_logprobs(model, word_tokenizer, text, dynamic=DynamicEvaluation(model, lr, decay),
                                 chunk_tokens=segment)

    # The same procedure by hand: score a segment with the current weights, then one SGD
    # step on its mean loss and a pull of `decay` towards the trained weights.
    reference = tiny_model(word_tokenizer.vocab_size)
    trained = [p.detach().clone() for p in reference.parameters()]
    inputs, targets = stream_ids(word_tokenizer, LINES)
    state = reference.init_state(1)
    expected = []
    for start in range(0, len(targets), segment):
        x = torch.tensor(inputs[start:start + segment]).unsqueeze(1)
        y = torch.tensor(targets[start:start + segment])
        logits, new_state = reference(x, state)
        logp = torch.log_softmax(logits[:, 0].float(), -1)[torch.arange(len(y)), y]
        expected.extend(logp.tolist())
        grads = torch.autograd.grad(-logp.mean(), list(reference.parameters()))
        with torch.no_grad():
            for p, g, p0 in zip(reference.parameters(), grads, trained):
                p -= lr * g
                p += decay * (p0 - p)
        state = tuple(s.detach() for s in new_state)

    # Word scores are per word; the word tokenizer has one token per word.
    assert len(got) == len(expected) == result.words + result.sentences
    assert got == pytest.approx(expected, abs=1e-5)
    assert got[segment:] != pytest.approx(token_logprobs(tiny_model(word_tokenizer.vocab_size), word_tokenizer,
                                                         text)[1][segment:], abs=1e-3)


def test_dynamic_evaluation_never_sees_the_text_it_scores(tmp_path, word_tokenizer):
    """Two texts that share a beginning get the same scores for it, whatever follows."""
    shared = LINES[:3]
    scores = []
    for ending in (["the dog runs ."], ["a cat sees a cat ."]):
        text = tmp_path / "t.txt"
        text.write_text("\n".join(shared + ending) + "\n")
        model = tiny_model(word_tokenizer.vocab_size)
        scores.append(token_logprobs(model, word_tokenizer, text, dynamic=DynamicEvaluation(model, 1.0),
                                     chunk_tokens=4)[1])
    prefix = sum(len(line.split()) + 1 for line in shared)
    assert scores[0][:prefix] == scores[1][:prefix]
    assert scores[0][prefix:] != scores[1][prefix:]


def test_dynamic_evaluation_learns_a_repeated_text_and_restores_the_weights(tmp_path, word_tokenizer):
    text = tmp_path / "t.txt"
    text.write_text("a cat sees the dog .\n" * 30)
    model = tiny_model(word_tokenizer.vocab_size)
    before = [p.detach().clone() for p in model.parameters()]
    plain = score_file(model, word_tokenizer, str(text), CPU)
    dynamic = DynamicEvaluation(model, 2.0)
    adapted = score_file(model, word_tokenizer, str(text), CPU, dynamic=dynamic, chunk_tokens=7)
    assert adapted.ppl < 0.75 * plain.ppl
    assert dynamic.steps == 30  # 30 lines of 7 tokens, 7 tokens a step
    dynamic.restore()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_cache_mixes_a_pointer_over_past_features_across_chunks(tmp_path, word_tokenizer):
    text = tmp_path / "t.txt"
    text.write_text("\n".join(LINES) + "\n")
    size, theta, weight = 6, 0.7, 0.3
    model = tiny_model(word_tokenizer.vocab_size)
    _, got = token_logprobs(model, word_tokenizer, text, cache=NeuralCache(size, theta, weight), chunk_tokens=4)

    inputs, targets = stream_ids(word_tokenizer, LINES)
    with torch.no_grad():
        features, _ = model.hidden_states(torch.tensor(inputs).unsqueeze(1))
        h = features[:, 0].double()  # (T, D)
        p_model = torch.softmax(model.decode(features[:, 0]).double(), -1)  # (T, V)
    expected = []
    for t, y in enumerate(targets):
        window = range(max(0, t - size), t)
        if not window:
            expected.append(math.log(p_model[t, y]))
            continue
        scores = {i: math.exp(theta * float(h[t] @ h[i])) for i in window}
        p_cache = sum(s for i, s in scores.items() if targets[i] == y) / sum(scores.values())
        expected.append(math.log((1 - weight) * p_model[t, y] + weight * p_cache))
    assert got == pytest.approx(expected, abs=1e-5)


def test_cache_helps_on_repeated_text(tmp_path, word_tokenizer):
    text = tmp_path / "t.txt"
    text.write_text("a cat sees the dog .\n" * 20)
    model = tiny_model(word_tokenizer.vocab_size)
    plain = score_file(model, word_tokenizer, str(text), CPU)
    # theta 0: the cache predicts each token by its frequency in the window (1/7 here),
    # against the random model's ~1/13.
    cached = score_file(model, word_tokenizer, str(text), CPU, cache=NeuralCache(50, 0.0, 0.5))
    assert cached.ppl < 0.8 * plain.ppl


def test_the_cache_in_the_sentence_context_remembers_earlier_lines(tmp_path, word_tokenizer):
    """Each line starts from a fresh state, but the cache's window runs on across lines: the
    second line's scores are those of the line alone mixed with a pointer over the first."""
    text = tmp_path / "t.txt"
    text.write_text("the dog runs .\nthe dog runs .\n")
    model = tiny_model(word_tokenizer.vocab_size)
    _, alone = token_logprobs(model, word_tokenizer, text, context="sentence")
    _, cached = token_logprobs(model, word_tokenizer, text, context="sentence", cache=NeuralCache(50, 0.0, 0.5))
    assert cached[0] == pytest.approx(alone[0], abs=1e-6)  # nothing in the window yet
    # theta 0: the pointer is each token's share of the window; "the" is 1 of the 5 tokens before it.
    assert cached[5] == pytest.approx(math.log(0.5 * math.exp(alone[5]) + 0.5 * (1 / 5)), abs=1e-5)
