"""What a training run writes beside the model users load, and how old files are rotated.

``--out runs/x/model.pt`` gives:

    runs/x/model.pt               the best model by validation (the file users load)
    runs/x/model.last.pt          the last training state, for --resume
    runs/x/model.metrics.jsonl    one JSON object per log interval, skipped step and validation
    runs/x/model.step<N>.pt       with --keep-checkpoints: the model of each validation
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rnnlm_cli.files.atomic import append_line, open_append
from rnnlm_cli.train.grad_norms import NormTally, interval_figures
from rnnlm_cli.units import perplexity


@dataclass(frozen=True)
class OutputPaths:
    """Where a run writes: the best model users load, and the files beside it."""

    model: str
    last: str
    metrics: str
    snapshot_prefix: str

    @classmethod
    def beside(cls, model_path: str) -> "OutputPaths":
        stem, _ = os.path.splitext(model_path)
        return cls(model=model_path, last=f"{stem}.last.pt", metrics=f"{stem}.metrics.jsonl",
                   snapshot_prefix=f"{stem}.step")

    def snapshot(self, step: int) -> str:
        return f"{self.snapshot_prefix}{step:09d}.pt"


class MetricsLog:
    """Appends one JSON object per line, each written whole, so a crashed run keeps its curve.

    The file is ours (see :func:`rnnlm_cli.files.atomic.open_append`): a fresh run replaces
    whatever is at the path, a symbolic link included, without following it; a resumed
    run appends only to a plain file. A full disk is :class:`OutputError` (exit 73) with
    the lines before intact. Only rank 0 writes; other ranks get a writer that drops
    everything. The file is opened at the first record, so a run refused before training
    (:mod:`.wall_budget`) leaves an earlier run's file as it was, and no empty one.
    """

    def __init__(self, path: str | None, append: bool):
        self._fd: int | None = None
        self._path = path or ""
        self._append = append

    def write(self, record: dict[str, Any]) -> None:
        if not self._path:
            return
        if self._fd is None:
            self._fd = open_append(self._path, fresh=not self._append)
        append_line(self._fd, self._path, (json.dumps(record) + "\n").encode("utf-8"))

    def close(self) -> None:
        self._path = ""  # a record after this is dropped, never written to a file opened again
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_SNAPSHOT_STEP = re.compile(r"\.step(\d+)\.pt$")


def rotate_snapshots(paths: OutputPaths, keep: int, best_step: int) -> list[str]:
    """Delete all but the newest ``keep`` snapshots; the newest and the best always stay."""
    found = sorted((int(m.group(1)), p) for p in glob.glob(glob.escape(paths.snapshot_prefix) + "*.pt")
                   if (m := _SNAPSHOT_STEP.search(p)))
    keep_steps = {step for step, _ in found[-keep:]} | {best_step}
    if found:
        keep_steps.add(found[-1][0])
    removed = []
    for step, path in found:
        if step not in keep_steps:
            os.remove(path)
            removed.append(path)
    return removed


class LogWindow:
    """Sums over a log interval, kept on the device: read back only when logged.

    Each step's gradient norm goes into a device buffer of one slot per step (``capacity``,
    the log interval, is all an interval holds; more grows it), so keeping them costs no
    host synchronisation; they are read back once, by :meth:`summary` or :meth:`close`,
    and counted into ``tally``, the run's (:class:`~rnnlm_cli.train.grad_norms.NormTally`).
    """

    def __init__(self, device: torch.device, clip: float = 0.0, capacity: int = 64,
                 tally: NormTally | None = None):
        self.clip = clip
        self.tally = tally if tally is not None else NormTally()
        self.loss = torch.zeros((), device=device)
        self.norms = torch.zeros(max(capacity, 1), device=device)
        self._restart()

    def _restart(self) -> None:
        self.loss.zero_()
        self.tokens = self.steps = 0
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor, norm: torch.Tensor, tokens: int) -> None:
        if self.steps == len(self.norms):
            self.norms = torch.cat([self.norms, torch.zeros_like(self.norms)])
        self.loss += loss.detach() * tokens
        self.norms[self.steps] = norm.detach()
        self.tokens += tokens
        self.steps += 1

    def _take_norms(self) -> np.ndarray:
        """The interval's norms on the host, counted into the run's tally."""
        norms = self.norms[:self.steps].double().cpu().numpy()
        self.tally.add(norms, self.clip)
        return norms

    def summary(self) -> dict[str, float]:
        """The interval's figures (see :func:`~rnnlm_cli.train.grad_norms.interval_figures`
        for the norm's); the window then starts a new interval."""
        elapsed = time.perf_counter() - self.start
        mean = self.loss.item() / max(self.tokens, 1)
        result = {"loss": mean, "ppl": perplexity(mean), **interval_figures(self._take_norms(), self.clip),
                  "tokens_per_s": self.tokens / max(elapsed, 1e-9)}
        self._restart()
        return result

    def close(self) -> None:
        """Count the norms of steps not yet logged into the run's tally (an epoch's end, a stop)."""
        self._take_norms()
        self._restart()
