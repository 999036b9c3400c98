"""Scoring text with a trained model: perplexity in SRILM's terms, and validation loss.

Every line is scored as a sentence: its tokens and the end-of-line token ``<eos>``
are predicted, the first from the context ``<eos>`` (the end of the previous line)
stands for. In the default ``stream`` context the hidden state carries across lines,
as in the literature's continuous-stream perplexity; in ``sentence`` context every
line starts afresh.

SRILM's conventions (``ngram -ppl``): ``logprob`` is the log10 probability of all
scored tokens; a word outside a word-level vocabulary is an OOV and its probability
is left out of ``logprob`` and of both denominators (the model still reads it as
``<unk>``). ``ppl = 10 ** (-logprob / (words - oovs + sentences))`` and
``ppl1 = 10 ** (-logprob / (words - oovs))``. With character, byte or subword
tokenizers ``logprob`` sums the pieces of each word, so ``ppl`` is per word.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from rnnlm_cli.batching import bptt_streams, iter_bptt
from rnnlm_cli.errors import DataError
from rnnlm_cli.models import detach_state
from rnnlm_cli.textio import DecodeStats, display_name, iter_lines

LN10 = math.log(10.0)
CONTEXTS = ("stream", "sentence")


@torch.no_grad()
def stream_loss(model: torch.nn.Module, tokens: np.ndarray, batch_size: int, bptt: int,
                device: torch.device) -> float:
    """Mean negative log-likelihood (nats per token) of a token stream, state carried."""
    model.eval()
    batch_size = max(1, min(batch_size, (len(tokens) - 1) // 2))
    streams = bptt_streams(tokens, batch_size)
    state = model.init_state(batch_size, device=device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for x, y in iter_bptt(streams, bptt):
        x, y = x.to(device), y.to(device)
        logits, state = model(x, state)
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="sum").double()
        count += y.numel()
        state = detach_state(state)
    return float(total.item()) / max(count, 1)


@dataclass
class EvalResult:
    """Totals of a scored text, in SRILM's terms (log10)."""

    file: str
    sentences: int = 0
    words: int = 0
    oovs: int = 0
    zeroprobs: int = 0
    logprob: float = 0.0
    tokens: int = 0
    """Tokens predicted, <eos> included (OOV words' tokens excluded)."""
    token_nll: float = 0.0
    """Sum of natural-log losses over those tokens."""
    invalid_lines: int = 0
    sentence_logprobs: list[float] | None = field(default=None, repr=False)

    @property
    def ppl(self) -> float:
        return _ppl(self.logprob, self.words - self.oovs - self.zeroprobs + self.sentences)

    @property
    def ppl1(self) -> float:
        return _ppl(self.logprob, self.words - self.oovs - self.zeroprobs)

    @property
    def token_ppl(self) -> float:
        return math.exp(self.token_nll / self.tokens) if self.tokens else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "sentences": self.sentences, "words": self.words, "oovs": self.oovs,
            "zeroprobs": self.zeroprobs, "logprob": self.logprob, "ppl": self.ppl, "ppl1": self.ppl1,
            "tokens": self.tokens, "token_ppl": self.token_ppl, "invalid_lines": self.invalid_lines,
        }


def _ppl(logprob: float, denominator: int) -> float:
    if denominator <= 0:
        return math.nan
    exponent = -logprob / denominator
    return 10.0 ** exponent if exponent < 300 else math.inf


@dataclass
class _Sentence:
    """One encoded line: the tokens to feed and, per target, whether it counts."""

    number: int
    inputs: list[int]   # <eos> then the line's tokens
    targets: list[int]  # the line's tokens then <eos>
    counted: list[bool]  # False for tokens of OOV words
    words: int
    oovs: int


def _sentences(lines: Iterable[str], tokenizer) -> Iterator[_Sentence]:
    for number, line in enumerate(lines):
        encoded = tokenizer.encode_line(line)
        counted = [not encoded.oov[w] for w in encoded.word_index] + [True]
        yield _Sentence(
            number=number,
            inputs=[tokenizer.eos_id] + encoded.ids,
            targets=encoded.ids + [tokenizer.eos_id],
            counted=counted,
            words=encoded.words,
            oovs=sum(encoded.oov),
        )


def evaluate_file(
    model: torch.nn.Module,
    tokenizer,
    path: str,
    device: torch.device,
    *,
    context: str = "stream",
    strict: bool = False,
    per_sentence: bool = False,
    chunk_tokens: int = 256,
    batch_tokens: int = 4096,
    on_sentence: Callable[[int, float], None] | None = None,
) -> EvalResult:
    """Score every line of ``path`` (a file, a ``.gz`` file or ``-``).

    ``on_sentence(count, log10_prob)`` is called for each line as soon as it is scored,
    in input order, so callers can stream per-line scores without holding them.
    """
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}")
    model.eval()
    stats = DecodeStats()
    result = EvalResult(file=display_name(path), sentence_logprobs=[] if per_sentence else None)
    sentences = _sentences(iter_lines(path, strict=strict, stats=stats), tokenizer)
    scorer = _score_stream if context == "stream" else _score_sentences
    size = chunk_tokens if context == "stream" else batch_tokens
    for sentence, nll in scorer(model, sentences, device, size):
        counted_nll = float(sum(n for n, keep in zip(nll, sentence.counted) if keep))
        result.sentences += 1
        result.words += sentence.words
        result.oovs += sentence.oovs
        result.tokens += sum(sentence.counted)
        result.token_nll += counted_nll
        result.logprob -= counted_nll / LN10
        if result.sentence_logprobs is not None:
            result.sentence_logprobs.append(-counted_nll / LN10)
        if on_sentence is not None:
            on_sentence(result.sentences, -counted_nll / LN10)
    result.invalid_lines = stats.invalid_lines
    if result.sentences == 0:
        raise DataError(f"{result.file}: no text to score (empty input)")
    return result


@torch.no_grad()
def _score_stream(model, sentences: Iterator[_Sentence], device, chunk_tokens: int):
    """Yield (sentence, per-target nll) in order, feeding one continuous stream in chunks."""
    state = model.init_state(1, device=device)
    pending: list[tuple[_Sentence, list[float]]] = []
    inputs: list[int] = []
    targets: list[int] = []
    owners: list[int] = []  # index into pending for each buffered target

    def run_chunk():
        nonlocal state
        x = torch.tensor(inputs, dtype=torch.long, device=device).unsqueeze(1)  # (T, 1)
        y = torch.tensor(targets, dtype=torch.long, device=device)
        logits, state = model(x, state)
        nll = torch.nn.functional.cross_entropy(logits[:, 0].float(), y, reduction="none").tolist()
        for owner, value in zip(owners, nll):
            pending[owner][1].append(value)

    for sentence in sentences:
        pending.append((sentence, []))
        for i in range(len(sentence.inputs)):
            inputs.append(sentence.inputs[i])
            targets.append(sentence.targets[i])
            owners.append(len(pending) - 1)
            if len(inputs) == chunk_tokens:
                run_chunk()
                inputs.clear(), targets.clear(), owners.clear()
                yield from _complete(pending)
    if inputs:
        run_chunk()
    yield from _complete(pending, final=True)


def _complete(pending: list, final: bool = False):
    """Pop the leading sentences whose every target has been scored."""
    done = 0
    for sentence, nll in pending:
        if len(nll) < len(sentence.targets):
            break
        done += 1
    finished = pending[:done]
    del pending[:done]
    if final and pending:
        raise RuntimeError("sentences left unscored")
    return finished


@torch.no_grad()
def _score_sentences(model, sentences: Iterator[_Sentence], device, batch_tokens: int):
    """Score each sentence from a fresh state, many at once, padded to the longest.

    A batch grows while its padded size stays within ``batch_tokens``, which bounds the
    (T, N, V) logits in memory; a longer sentence goes alone.
    """
    batch: list[_Sentence] = []
    longest = 0
    for sentence in sentences:
        grown = max(longest, len(sentence.inputs))
        if batch and grown * (len(batch) + 1) > batch_tokens:
            yield from _score_batch(model, batch, device)
            batch, grown = [], len(sentence.inputs)
        batch.append(sentence)
        longest = grown
    if batch:
        yield from _score_batch(model, batch, device)


def _score_batch(model, batch: list[_Sentence], device):
    length = max(len(s.inputs) for s in batch)
    x = torch.zeros(length, len(batch), dtype=torch.long)
    y = torch.zeros(length, len(batch), dtype=torch.long)
    for column, sentence in enumerate(batch):
        x[: len(sentence.inputs), column] = torch.tensor(sentence.inputs)
        y[: len(sentence.targets), column] = torch.tensor(sentence.targets)
    # Padding comes after each sentence's last token, so it never affects real targets.
    logits, _ = model(x.to(device), model.init_state(len(batch), device=device))  # (T, N, V)
    nll = torch.nn.functional.cross_entropy(
        logits.float().permute(1, 2, 0), y.t().to(device), reduction="none").cpu()  # (N, T)
    for column, sentence in enumerate(batch):
        yield sentence, nll[column, : len(sentence.targets)].tolist()
