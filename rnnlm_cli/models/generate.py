"""Sampling text from a trained model, one token at a time.

The context starts at a line start (the ``<eos>`` token), then reads the prompt; each
step draws the next token from the softmax after temperature, top-k and top-p (nucleus,
Holtzman et al., 2020) filtering. Sampling uses its own seeded generator, so the same
seed on the same device gives the same text.
"""

from __future__ import annotations

import os
from typing import Iterator

import torch

from rnnlm_cli.config import SamplingConfig


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus. (N, V) -> (N, V)."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p; the first always
        # stays, even for a top_p that rounds to 0 in the logits' precision.
        drop = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        drop[..., 0] = False
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.empty_like(logits).scatter_(-1, order, sorted_logits)
    return logits


def sample_tokens(
    model: torch.nn.Module,
    prompt_ids: list[int],
    eos_id: int,
    config: SamplingConfig,
    device: torch.device,
) -> Iterator[torch.Tensor]:
    """Yield, step by step, the (num_samples,) tensor of next tokens (on the CPU).

    With ``stop_at_eos`` a finished sample keeps yielding ``eos_id``; the caller stops
    printing it, and the loop ends once every sample has finished.
    """
    model.eval()
    seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(4), "little")
    generator = torch.Generator(device=device).manual_seed(seed)
    n = config.num_samples
    context = torch.tensor([eos_id] + list(prompt_ids), dtype=torch.long, device=device)
    with torch.no_grad():
        logits, state = model(context.unsqueeze(1).expand(-1, n).contiguous(), model.init_state(n, device=device))
        last = logits[-1]  # (N, V)
        finished = torch.zeros(n, dtype=torch.bool, device=device)
        for _ in range(config.max_tokens):
            token = _draw(last.float(), config, generator)  # (N,)
            if config.stop_at_eos:
                token = token.masked_fill(finished, eos_id)
                finished |= token == eos_id
            yield token.cpu()
            if config.stop_at_eos and bool(finished.all()):
                return
            logits, state = model(token.unsqueeze(0), state)
            last = logits[-1]


def _draw(logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator) -> torch.Tensor:
    if config.temperature == 0.0:
        return logits.argmax(dim=-1)
    # Shift the maximum to 0 and divide by at least the dtype's smallest normal number: a
    # tiny temperature then sends the others to -inf (greedy, as in the limit) instead of
    # every logit to +-inf or 0/0 and the softmax to NaN.
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    temperature = max(config.temperature, torch.finfo(shifted.dtype).tiny)
    logits = filter_logits(shifted / temperature, config.top_k, config.top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def sample_text(model: torch.nn.Module, tokenizer, prompt: str, config: SamplingConfig,
                device: torch.device | str = "cpu") -> Iterator[str]:
    """The text of ``config.num_samples`` samples continuing ``prompt``, in chunks to write as
    they come: one sample streams a chunk per decoded token; several, drawn as one batch, come
    once drawn, one after another, separated by a blank line (a line end with ``stop_at_eos``).

    Each sample starts with the prompt as given; its tokens still go through the decoder, so the
    continuation joins it the way the tokenizer joins tokens. The output ends with one line end.

    A backward model (``tokenizer.reverse``) writes right to left: the prompt is the END of the
    first line and the sample is the text before it, so each sample is printed once drawn, in
    reading order (:func:`_backward_text`).
    """
    prompt_ids = tokenizer.encode(prompt)
    eos = tokenizer.eos_id

    def started():
        decoder = tokenizer.streaming_decoder()
        for token in prompt_ids:
            decoder.push(token)
        return decoder

    if config.num_samples == 1 and not tokenizer.reverse:
        decoder, tail = started(), prompt  # tail: the last text given, to end with exactly one line end
        yield prompt
        for step in sample_tokens(model, prompt_ids, eos, config, device):
            token = int(step[0])
            chunk = "" if config.stop_at_eos and token == eos else decoder.push(token)
            if chunk:
                tail = chunk
                yield chunk
        chunk = decoder.flush()
        tail = chunk or tail
        yield chunk + ("" if tail.endswith("\n") else "\n")
        return

    for index, sample in enumerate(_drawn(model, prompt_ids, eos, config, device)):
        if tokenizer.reverse:
            text = _backward_text(tokenizer, prompt, prompt_ids, sample)
        else:
            decoder = started()
            text = prompt + "".join(decoder.push(t) for t in sample) + decoder.flush()
        separator = "\n" if config.stop_at_eos or index == config.num_samples - 1 else "\n\n"
        yield text.rstrip("\n") + separator


def _drawn(model, prompt_ids: list[int], eos: int, config: SamplingConfig, device) -> list[list[int]]:
    """Every sample's tokens once all are drawn (without the line end that stops one)."""
    samples: list[list[int]] = [[] for _ in range(config.num_samples)]
    done = [False] * config.num_samples
    for step in sample_tokens(model, prompt_ids, eos, config, device):
        for index, token in enumerate(step.tolist()):
            if done[index]:
                continue
            if config.stop_at_eos and token == eos:
                done[index] = True
            else:
                samples[index].append(token)
    return samples


def _backward_text(tokenizer, prompt: str, prompt_ids: list[int], sample: list[int]) -> str:
    """A backward model's sample in reading order: its first line is the drawn text, then the
    prompt as given (which the model read first, from the line's end); lines drawn after the
    first follow it, each in reading order."""
    text = tokenizer.decode(prompt_ids + sample)
    first, newline, rest = text.partition("\n")
    read = tokenizer.decode(prompt_ids)  # the prompt as the tokens give it back (<unk> for an unknown word)
    if first.endswith(read):
        first = first[:len(first) - len(read)] + prompt
    return first + newline + rest
