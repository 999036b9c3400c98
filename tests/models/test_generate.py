import pytest
import torch

from rnnlm_cli.errors import UsageError
from rnnlm_cli.config import SamplingConfig
from rnnlm_cli.models.generate import filter_logits, sample_tokens

from conftest import tiny_model

CPU = torch.device("cpu")


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    kept = torch.isfinite(filter_logits(logits, top_k=2))
    assert kept.tolist() == [[False, True, True, False]]


def test_top_p_keeps_the_smallest_nucleus_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    # 0.5 < 0.7, 0.5 + 0.3 >= 0.7: the nucleus is the first two tokens.
    assert torch.isfinite(filter_logits(logits, top_p=0.7)).tolist() == [[True, True, False, False]]
    # p below the largest probability still keeps the most likely token.
    assert torch.isfinite(filter_logits(logits, top_p=0.1)).tolist() == [[True, False, False, False]]


def test_same_seed_same_tokens_and_other_seed_differs():
    model = tiny_model(50, seed=1)
    def run(seed):
        config = SamplingConfig(max_tokens=30, seed=seed)
        return [int(t[0]) for t in sample_tokens(model, [3, 4], 0, config, CPU)]
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_greedy_follows_the_argmax_of_the_model():
    model = tiny_model(20, seed=2)
    config = SamplingConfig(max_tokens=5, temperature=0.0)
    produced = [int(t[0]) for t in sample_tokens(model, [], 0, config, CPU)]
    context = [0]
    for token in produced:
        logits, _ = model(torch.tensor(context).unsqueeze(1))
        assert token == int(logits[-1, 0].argmax())
        context.append(token)


def test_samples_stop_at_eos_when_asked():
    model = tiny_model(6, seed=4)
    with torch.no_grad():
        model.decoder.bias[0] = 5.0  # make <eos> (id 0) likely
    config = SamplingConfig(max_tokens=200, num_samples=8, stop_at_eos=True, seed=0)
    steps = list(sample_tokens(model, [], 0, config, CPU))
    assert len(steps) < 200
    columns = torch.stack(steps).t()  # (N, steps)
    for column in columns.tolist():
        first = column.index(0)
        assert all(t == 0 for t in column[first:])


def test_bad_sampling_options_are_usage_errors():
    for bad in ({"top_p": 0.0}, {"temperature": -1.0}, {"max_tokens": 0}, {"top_k": -1}, {"num_samples": 0}):
        with pytest.raises(UsageError):
            SamplingConfig(**bad)


def _word_model(seed: int):
    from rnnlm_cli.text.tokenizers import WordTokenizer

    tokenizer = WordTokenizer(["<eos>", "<unk>", "the", "dog", "runs", "."])
    return tiny_model(tokenizer.vocab_size, seed=seed), tokenizer


def test_one_sample_streams_the_prompt_then_a_chunk_per_word_and_one_line_end():
    from rnnlm_cli.models.generate import sample_text

    model, tokenizer = _word_model(5)
    config = SamplingConfig(max_tokens=12, seed=3)
    chunks = list(sample_text(model, tokenizer, "the dog", config, CPU))
    tokens = [int(t[0]) for t in sample_tokens(model, tokenizer.encode("the dog"), 0, config, CPU)]
    # The words drawn, as a word tokenizer writes them: spaces between words, a line end for <eos>.
    expected = "the dog"
    for token in tokens:
        expected += "\n" if token == 0 else ("" if expected.endswith("\n") else " ") + tokenizer.pieces[token]
    text = "".join(chunks)
    assert chunks[0] == "the dog" and text.rstrip("\n") == expected.rstrip("\n")
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert len(chunks) >= len([t for t in tokens if t != 0])


def test_several_samples_stopped_at_eos_are_one_line_each():
    from rnnlm_cli.models.generate import sample_text

    model, tokenizer = _word_model(6)
    with torch.no_grad():
        model.decoder.bias[0] = 3.0  # <eos> likely: short lines
    config = SamplingConfig(max_tokens=50, num_samples=4, stop_at_eos=True, seed=1)
    lines = "".join(sample_text(model, tokenizer, "the", config, CPU)).split("\n")
    assert lines[-1] == "" and len(lines) == 5
    assert all(line.split()[0] == "the" for line in lines[:-1])
