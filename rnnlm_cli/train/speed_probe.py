"""How long one training step of a model takes on this machine, measured before the run.

A run whose clock (``--max-time``, ``--max-wall-time``) ends it sees as many epochs as the
machine trains in that time, and a machine here can be twice as fast as one there: the
regularisation fitted to a budget (:mod:`.regularization_fit`) needs the step's cost on
this machine, for this model and batch, before the model it fits is built. A few steps of a
throwaway copy on the corpus' first segments (forward, backward, optimizer, in the run's
precision) give it in about a second; the generators are reseeded after it, so the run
itself is the same with or without the probe.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.device import amp_enabled, bf16_autocast, synchronize
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.text.batching import bptt_streams, iter_bptt

WARMUP_STEPS = 2
"""Steps run before timing: the first ones allocate buffers and choose kernels."""
TIMED_STEPS = 4
"""Steps timed; the probe's cost is about this many steps of the run."""


def seconds_per_step(config: ModelConfig, train: TrainConfig, tokens: np.ndarray, device: torch.device) -> float:
    """The seconds one optimizer step of a ``config`` model takes on ``device`` with ``train``'s
    batch, segment length, optimizer and precision, timed on the first segments of ``tokens``."""
    from rnnlm_cli.models.lm import build_model, detach_state
    from rnnlm_cli.train.objective import Objective
    from rnnlm_cli.train.optimizers import make_optimizer

    steps = WARMUP_STEPS + TIMED_STEPS
    needed = train.batch_size * (train.bptt * steps + 1)
    streams = bptt_streams(np.asarray(tokens[:needed]), train.batch_size)  # (B, L + 1)
    segments = list(iter_bptt(streams, train.bptt))
    if not segments:
        raise ValueError("too few tokens to time a step")
    model = build_model(config).to(device)
    model.train()
    optimizer = make_optimizer(model, train)
    objective = Objective(train)
    amp = amp_enabled(train.amp, device)
    state = model.init_state(train.batch_size, device=device)
    started = 0.0
    for index in range(steps):
        x, y = (t.to(device) for t in segments[index % len(segments)])  # (T, B)
        if index == WARMUP_STEPS:
            synchronize(device)
            started = time.perf_counter()
        with bf16_autocast(device, amp):
            scores, state, raw, dropped = objective.forward(model, x, y, detach_state(state))
        loss = objective.loss(model, scores, raw, dropped)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.clip)
        optimizer.step()
    synchronize(device)
    return (time.perf_counter() - started) / TIMED_STEPS
