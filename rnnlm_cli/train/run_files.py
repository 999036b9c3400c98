"""Writing a run's model files: the best model users load, the per-validation snapshots, and
the training state ``--resume`` reads (``<stem>.last.pt``).

Under torchrun every rank calls the same methods (the state gathers each rank's hidden state
and random generators); rank 0 alone writes.
"""

from __future__ import annotations

from typing import Any

import torch

from rnnlm_cli.store.checkpoint import save_checkpoint
from rnnlm_cli.train.distributed import Dist, gather_to_all
from rnnlm_cli.train.outputs import OutputPaths, rotate_snapshots
from rnnlm_cli.train.state import RankState, RunPosition, TrainState, capture_rng


class RunFiles:
    """The files of one run at ``paths``, each holding the tokenizer and the run's options."""

    def __init__(self, paths: OutputPaths, tokenizer_dict: dict[str, Any], train_config: dict[str, Any],
                 dist: Dist) -> None:
        self.paths, self.tokenizer_dict, self.train_config, self.dist = paths, tokenizer_dict, train_config, dist

    def save_model(self, model: torch.nn.Module, path: str, summary: dict[str, Any]) -> None:
        if self.dist.is_main:
            save_checkpoint(path, model, self.tokenizer_dict, metrics=summary, train_config=self.train_config)

    def keep_validated(self, model: torch.nn.Module, summary: dict[str, Any], *, improved: bool,
                       progress: RunPosition, keep: int) -> None:
        """After a validation (``summary``): the model users load when it ``improved``, and with
        ``keep`` (--keep-checkpoints) this validation's snapshot, the last ``keep`` of them kept."""
        if improved:
            self.save_model(model, self.paths.model, summary)
        if keep and self.dist.is_main:
            self.save_model(model, self.paths.snapshot(progress.step), summary)
            rotate_snapshots(self.paths, keep, progress.best_step)

    def save_state(self, model: torch.nn.Module, progress: RunPosition, optimizer: torch.optim.Optimizer,
                   schedule_state: dict[str, Any] | None, average_state: dict[str, Any] | None,
                   hidden: tuple[torch.Tensor, ...] | None) -> None:
        """``<stem>.last.pt``: the weights and everything a resumed run continues from."""
        # Each rank has its own hidden state and random generators: rank 0 saves them all.
        # The copies matter: a state may be a view into a larger buffer (the attention
        # memory), and a loader refuses any tensor whose storage is larger than itself.
        mine = RankState(rng=capture_rng(), hidden=None if hidden is None else tuple(t.detach().cpu().clone() for t in hidden))
        ranks = gather_to_all(mine, self.dist)
        if not self.dist.is_main:
            return
        state = TrainState(progress=progress, optimizer=optimizer.state_dict(), ranks=tuple(ranks),
                           schedule=schedule_state, average=average_state)
        summary = {"step": progress.step, "epoch": progress.epoch, "best_valid_loss": progress.best_valid_loss}
        save_checkpoint(self.paths.last, model, self.tokenizer_dict, metrics=summary,
                        train_config=self.train_config, training_state=state.to_dict())
