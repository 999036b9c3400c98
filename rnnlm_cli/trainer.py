"""The truncated-BPTT training loop.

The corpus is cut into ``batch_size`` parallel streams (see ``batching.bptt_streams``);
each step trains on the next ``bptt`` tokens of every stream, starting from the hidden
state the previous segment ended in, detached so gradients stop at the segment start
(Williams & Peng, 1990). The loop reports through a callbacks object and never prints.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from rnnlm_cli.batching import bptt_streams, iter_bptt
from rnnlm_cli.checkpoint import save_checkpoint
from rnnlm_cli.config import TrainConfig, as_dict
from rnnlm_cli.device import synchronize
from rnnlm_cli.errors import RnnlmError
from rnnlm_cli.evaluate import stream_loss
from rnnlm_cli.models import detach_state


class TrainingDiverged(RnnlmError):
    """No validation score was finite: nothing worth keeping was learned."""


@dataclass(frozen=True)
class OutputPaths:
    """Where a run writes: the best model users load, and the files beside it."""

    model: str
    last: str
    metrics: str

    @classmethod
    def beside(cls, model_path: str) -> "OutputPaths":
        stem, _ = os.path.splitext(model_path)
        return cls(model=model_path, last=f"{stem}.last.pt", metrics=f"{stem}.metrics.jsonl")


@dataclass
class TrainResult:
    best_valid_loss: float
    best_valid_ppl: float
    steps: int
    epochs: float
    train_tokens: int
    seconds: float
    tokens_per_second: float
    stop_reason: str
    paths: OutputPaths

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "paths": asdict(self.paths)}


class TrainCallbacks(Protocol):
    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_progress(self, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> None: ...
    def on_log(self, record: dict[str, Any]) -> None: ...
    def on_validate(self, record: dict[str, Any]) -> None: ...


class SilentCallbacks:
    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_progress(self, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> None:
        pass

    def on_log(self, record: dict[str, Any]) -> None:
        pass

    def on_validate(self, record: dict[str, Any]) -> None:
        pass


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _ppl(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf


class _Metrics:
    """Appends one JSON object per line, flushed, so a crashed run keeps its curve."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._handle = open(path, "w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def fit(
    model: torch.nn.Module,
    train_tokens: np.ndarray,
    valid_tokens: np.ndarray,
    tokenizer_dict: dict[str, Any],
    config: TrainConfig,
    device: torch.device,
    paths: OutputPaths,
    callbacks: TrainCallbacks | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_tokens``, keeping the best model by validation at ``paths.model``."""
    callbacks = callbacks or SilentCallbacks()
    model.to(device)
    optimizer = make_optimizer(model, config)
    streams = bptt_streams(train_tokens, config.batch_size)  # (B, L + 1), a view of the file
    steps_per_epoch = math.ceil((streams.shape[1] - 1) / config.bptt)
    vocab = model.config.vocab_size
    metrics = _Metrics(paths.metrics)
    callbacks.on_start({
        "device": str(device), "train_tokens": int(len(train_tokens)), "valid_tokens": int(len(valid_tokens)),
        "steps_per_epoch": steps_per_epoch, "parameters": sum(p.numel() for p in model.parameters()),
    })

    best_loss, step, tokens_seen, train_seconds = math.inf, 0, 0, 0.0
    stop_reason, epoch, epoch_fraction = "epochs", 0, 0.0
    try:
        for epoch in range(1, config.epochs + 1):
            model.train()
            state = model.init_state(config.batch_size, device=device)
            # Losses are summed on the device and read back only when logged: a .item()
            # per step would wait for the GPU every step.
            window_loss = torch.zeros((), device=device)
            window_tokens, window_start = 0, time.perf_counter()
            epoch_start = time.perf_counter()
            for index, (x, y) in enumerate(iter_bptt(streams, config.bptt)):
                x, y = _to_device(x, device), _to_device(y, device)  # (T, B)
                state = detach_state(state)
                logits, state = model(x, state)  # (T, B, V)
                loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
                optimizer.step()

                step += 1
                window_loss += loss.detach() * y.numel()
                window_tokens += y.numel()
                tokens_seen += y.numel()
                callbacks.on_progress(epoch, index + 1, steps_per_epoch)
                if step % config.log_interval == 0:
                    elapsed = time.perf_counter() - window_start
                    mean = window_loss.item() / window_tokens
                    record = {
                        "event": "train", "epoch": epoch, "step": step, "loss": mean, "ppl": _ppl(mean),
                        "lr": optimizer.param_groups[0]["lr"], "tokens": tokens_seen,
                        "tokens_per_s": window_tokens / max(elapsed, 1e-9),
                    }
                    metrics.write(record)
                    callbacks.on_log(record)
                    window_loss.zero_()
                    window_tokens, window_start = 0, time.perf_counter()
                elapsed_total = train_seconds + time.perf_counter() - epoch_start
                if config.max_steps and step >= config.max_steps:
                    stop_reason = "max_steps"
                elif config.max_time and elapsed_total >= config.max_time:
                    stop_reason = "max_time"
                if stop_reason != "epochs":
                    epoch_fraction = (index + 1) / steps_per_epoch
                    break
            synchronize(device)
            train_seconds += time.perf_counter() - epoch_start

            valid_loss = stream_loss(model, valid_tokens, config.eval_batch_size, config.bptt, device)
            improved = math.isfinite(valid_loss) and valid_loss < best_loss
            record = {"event": "valid", "epoch": epoch, "step": step, "valid_loss": valid_loss,
                      "valid_ppl": _ppl(valid_loss), "best": improved, "train_seconds": train_seconds}
            metrics.write(record)
            callbacks.on_validate(record)
            summary = {"valid_loss": valid_loss, "valid_ppl": _ppl(valid_loss), "epoch": epoch,
                       "step": step, "train_tokens": tokens_seen}
            if improved:
                best_loss = valid_loss
                save_checkpoint(paths.model, model, tokenizer_dict, metrics=summary, train_config=as_dict(config))
            save_checkpoint(
                paths.last, model, tokenizer_dict, metrics=summary, train_config=as_dict(config),
                training_state={"optimizer": optimizer.state_dict(),
                                "progress": {"epoch": epoch, "step": step, "train_tokens": tokens_seen,
                                             "best_valid_loss": best_loss}},
            )
            if stop_reason != "epochs":
                break
    finally:
        metrics.close()

    if not math.isfinite(best_loss):
        raise TrainingDiverged(
            "training diverged: validation loss was never finite; try a lower --lr or a --clip value"
        )
    epochs_done = (epoch - 1 + epoch_fraction) if stop_reason != "epochs" else float(epoch)
    return TrainResult(
        best_valid_loss=best_loss, best_valid_ppl=_ppl(best_loss), steps=step, epochs=epochs_done,
        train_tokens=tokens_seen, seconds=train_seconds,
        tokens_per_second=tokens_seen / max(train_seconds, 1e-9), stop_reason=stop_reason, paths=paths,
    )


def _to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        # Pinned host memory lets the copy overlap with the previous step's kernels.
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)
