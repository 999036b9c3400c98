"""Model sizes from the config alone, and the caps that keep a flag or a file from asking
for more memory than the machine has (a refusal with a message instead of an OOM kill).

The parameter cap: ``--max-params N`` when given, else :func:`default_max_params`: the
machine's memory (physical, or the cgroup's limit when lower) divided by what a parameter
costs, :data:`BYTES_PER_PARAMETER` to train it, :data:`BYTES_PER_LOADED_PARAMETER` to load
it. A checkpoint is held to the cap before a model is built from its stored config.
"""

from __future__ import annotations

import os

import torch

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.errors import CheckpointError, UsageError

_FLOAT = 4
BYTES_PER_PARAMETER = 16
"""Training: float32 weight, gradient and Adam's two moments."""
BYTES_PER_LOADED_PARAMETER = 8
"""Loading: the weights read from the file and the float32 model built from them."""
_UNKNOWN_MEMORY = 16 << 30  # assumed where the memory cannot be read
_CGROUP_LIMIT = "/sys/fs/cgroup/memory.max"


def estimated_parameters(config: ModelConfig) -> int:
    """Trainable values of the model ``build_model(config)`` builds (a tied weight once),
    computed without building it, so any config answers at once. The recurrent layers are
    sized by the cell's registry entry (:meth:`CellSpec.layer_size`)."""
    spec, options = config.cell_spec, config.cell_options
    count = config.vocab_size * config.emb
    hidden = config.hidden
    count += spec.layer_size(config.emb, hidden, **options)
    # Layers after the first are all alike: hidden in, hidden out.
    count += spec.layer_size(hidden, hidden, **options) * (config.layers - 1)
    if config.attention:
        count += 4 * hidden * hidden + 3 * hidden  # norm, query, key and combine
    features = hidden
    if config.tied:
        if hidden != config.emb:
            count += hidden * config.emb + config.emb
        return count + config.vocab_size  # the decoder's bias; its weight is the embedding
    cutoffs = config.cutoffs
    if not cutoffs:
        return count + features * config.vocab_size + config.vocab_size
    # torch's AdaptiveLogSoftmaxWithLoss as build_adaptive_softmax makes it, without biases.
    div_value = config.adaptive_div_value
    bounds = (*cutoffs, config.vocab_size)
    count += features * (cutoffs[0] + len(cutoffs))
    for index in range(len(cutoffs)):
        width = int(features // (div_value ** (index + 1)))
        count += features * width + width * (bounds[index + 1] - bounds[index])
    return count


def tensor_count(config: ModelConfig) -> int:
    """Tensors in the state dict of ``build_model(config)`` (a tied weight under both names)."""
    spec, options = config.cell_spec, config.cell_options
    first = len(spec.layer_parameters(config.emb, config.hidden, **options))
    later = len(spec.layer_parameters(config.hidden, config.hidden, **options))
    count = 1 + first + later * (config.layers - 1) + (6 if config.attention else 0)
    if config.tied and config.hidden != config.emb:
        count += 2
    if config.cutoffs:
        return count + 1 + 2 * len(config.cutoffs)
    return count + 2


def memory_bytes() -> int:
    """This machine's memory: physical, or the cgroup's limit when lower."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        total = _UNKNOWN_MEMORY
    try:
        with open(_CGROUP_LIMIT, encoding="ascii") as handle:
            limit = handle.read().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def default_max_params(loading: bool = False) -> int:
    """The parameter cap when none is given: as many as fit in memory to train (or to load)."""
    return memory_bytes() // (BYTES_PER_LOADED_PARAMETER if loading else BYTES_PER_PARAMETER)


def check_model_size(config: ModelConfig, max_params: int = 0, path: str | None = None) -> None:
    """Refuse a model of more than ``max_params`` parameters (0: :func:`default_max_params`).

    UsageError (exit 2) for a model asked for with flags; with ``path``, the file whose
    stored config asks for it, CheckpointError (exit 65).
    """
    loading = path is not None
    cap = max_params or default_max_params(loading)
    count = estimated_parameters(config)
    if count <= cap:
        return
    if max_params:
        limit, advice = f"--max-params {cap:,}", "give a larger --max-params"
    else:
        limit = f"{cap:,}, the most this machine's memory {'loads' if loading else 'trains'}"
        advice = "use a machine with more memory"
    if loading:
        raise CheckpointError(f"{path}: the stored model config asks for {count:,} parameters, "
                              f"more than {limit}; {advice}")
    raise UsageError(f"the model would have {count:,} parameters, more than {limit}; "
                     f"lower --hidden, --emb, --layers or the vocabulary size, or {advice}")


def training_bytes(model: ModelConfig, train: TrainConfig) -> int:
    """Weights, gradients and two optimizer moments, plus the step's largest activations."""
    weights = 4 * estimated_parameters(model) * _FLOAT
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
    recurrent = tokens * model.layers * model.hidden * (model.cell_spec.gates + 2) * _FLOAT
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
            f"this model and batch need about {need / 2**30:.1f} GiB ({estimated_parameters(model):,} parameters, "
            f"{train.batch_size}x{train.bptt} tokens per step) but {device} has {have / 2**30:.1f} GiB; "
            "lower --hidden, --emb, --layers, --batch-size or --bptt")
