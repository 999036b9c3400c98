"""Shared ground for the tests of ``rnnlm eval``'s scoring modes.

Most models here are uniform (zero decoder weight and bias), so every token has
probability 1/V and every expected number can be worked out by hand; the others are
checked against an independent forward pass. Vocabularies are written out in the test,
so the token ids are known without asking the tokenizers.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rnnlm_cli.store.checkpoint import save_checkpoint
from rnnlm_cli.text.tokenizers import WordTokenizer

from conftest import cli, tiny_model

WORDS = ["<eos>", "<unk>", "the", "dog", "cat", "runs", "."]
V = len(WORDS)
P = 1 / V
LOG_P = math.log10(P)


def g(value: float) -> str:
    """Six significant digits, as SRILM prints numbers."""
    return f"{value:.6g}"



def uniform(vocab_size: int) -> torch.nn.Module:
    model = tiny_model(vocab_size)
    with torch.no_grad():
        model.decoder.weight.zero_()
        model.decoder.bias.zero_()
    return model


def save(path: Path, model, tokenizer) -> Path:
    save_checkpoint(path, model, tokenizer.to_dict())
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def run(*args, input=None):
    """``rnnlm eval ARGS`` in this process."""
    return cli("eval", *args, input=input)


def ok(*args, input=None):
    result = run(*args, input=input)
    assert result.exit_code == 0, result.stderr
    return result


def usage_error(*args) -> str:
    result = run(*args)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlm: error: "), result.stderr
    return lines[0]


@torch.no_grad()
def token_logprobs(model, lines: list[list[int]], carry: bool) -> list[list[float]]:
    """Natural-log probability of each line's tokens and then <eos>, by plain forward passes:
    one over the whole text when the state carries, else one per line."""
    def forward(inputs: list[int], targets: list[int]) -> list[float]:
        logits, _ = model(torch.tensor(inputs).unsqueeze(1))  # (T, 1, V)
        logp = torch.log_softmax(logits[:, 0].double(), -1)  # (T, V)
        return logp[torch.arange(len(targets)), torch.tensor(targets)].tolist()

    sequences = [([0] + ids, ids + [0]) for ids in lines]
    if not carry:
        return [forward(inputs, targets) for inputs, targets in sequences]
    flat = forward([t for s in sequences for t in s[0]], [t for s in sequences for t in s[1]])
    out, start = [], 0
    for _, targets in sequences:
        out.append(flat[start:start + len(targets)])
        start += len(targets)
    return out



@pytest.fixture(scope="module")
def word_tok():
    return WordTokenizer(WORDS)


@pytest.fixture(scope="module")
def uniform_lm(tmp_path_factory, word_tok):
    return save(tmp_path_factory.mktemp("uniform") / "model.pt", uniform(V), word_tok)


@pytest.fixture(scope="module")
def random_lm(tmp_path_factory, word_tok):
    """A model whose predictions depend on the context, so a carried state shows."""
    return save(tmp_path_factory.mktemp("random") / "model.pt", tiny_model(V, seed=5), word_tok)


def scored_logprobs(model, tokenizer, path, **options):
    """The scorer's result for ``path`` and the natural-log probability of every token in text
    order (a word tokenizer's words and line ends), as ``score_file`` reports them."""
    from rnnlm_cli.score.evaluate import score_file

    seen = []

    def collect(text, words, ends_line):
        seen.extend(words)

    result = score_file(model, tokenizer, str(path), torch.device("cpu"), on_words=collect, **options)
    return result, [w.model_log10 * math.log(10) for w in seen]
