"""A rough memory estimate, so absurd sizes are refused with a message instead of an OOM kill."""

from __future__ import annotations

import os

import torch

from rnnlm_cli.config import ModelConfig, TrainConfig
from rnnlm_cli.errors import UsageError

_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
_FLOAT = 4


def parameter_count(config: ModelConfig) -> int:
    gates = _GATES.get(config.cell, 4)
    count = config.vocab_size * config.emb
    for layer in range(config.layers):
        inputs = config.emb if layer == 0 else config.hidden
        count += gates * config.hidden * (inputs + config.hidden + 2)
    features = config.hidden
    if config.tied:
        if config.hidden != config.emb:
            count += config.hidden * config.emb + config.emb
        features = config.emb
    else:
        count += features * config.vocab_size
    return count + config.vocab_size


def training_bytes(model: ModelConfig, train: TrainConfig) -> int:
    """Weights, gradients and two optimizer moments, plus the step's largest activations."""
    weights = 4 * parameter_count(model) * _FLOAT
    tokens = train.batch_size * train.bptt
    # Logits, their gradient and the softmax dominate activations for any real vocabulary;
    # the adaptive softmax holds the head's (shortlist + one per cluster) and, at most, one
    # cluster's for all tokens at once.
    cutoffs = model.cutoffs
    if cutoffs:
        bounds = (0, *cutoffs, model.vocab_size)
        widest = max(bounds[i + 1] - bounds[i] for i in range(1, len(bounds) - 1))
        logits = 3 * tokens * (cutoffs[0] + len(cutoffs) + widest) * _FLOAT
    else:
        logits = 3 * tokens * model.vocab_size * _FLOAT
    recurrent = tokens * model.layers * model.hidden * (_GATES.get(model.cell, 4) + 2) * _FLOAT
    return weights + logits + recurrent


def available_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    if device.type == "cpu" and hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None
    return None


def check_fits_in_memory(model: ModelConfig, train: TrainConfig, device: torch.device) -> None:
    need = training_bytes(model, train)
    have = available_bytes(device)
    if have is not None and need > have:
        raise UsageError(
            f"this model and batch need about {need / 2**30:.1f} GiB ({parameter_count(model):,} parameters, "
            f"{train.batch_size}x{train.bptt} tokens per step) but {device} has {have / 2**30:.1f} GiB; "
            "lower --hidden, --emb, --layers, --batch-size or --bptt")
