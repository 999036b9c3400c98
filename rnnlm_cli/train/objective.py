"""The training objective: cross-entropy plus optional regularisers.

    loss = CE + l1 * sum|W| + ar * mean(dropped^2) + tar * mean((raw_t - raw_(t-1))^2)
              + synonym_weight * mean_pairs ||e_a - e_b||^2

L1 covers weight matrices and embeddings (parameters with two or more dimensions), not
biases: a bias shifts an activation without scaling an input, and shrinking it does not
simplify the model. AR and TAR are Merity et al. (2018): ``dropped`` is the last layer's
output after dropout, ``raw`` before it, both (T, B, H). The cross-entropy is computed
in float32 whatever precision the forward pass ran in (the model returns the targets'
log-probabilities in float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rnnlm_cli.config import TrainConfig


@dataclass
class Objective:
    """The loss terms of one run; ``pairs`` are (P, 2) embedding rows for the synonym loss."""

    config: TrainConfig
    pairs: torch.Tensor | None = None

    @property
    def needs_outputs(self) -> bool:
        return self.config.ar > 0 or self.config.tar > 0

    def forward(self, forward, x: torch.Tensor, y: torch.Tensor, state):
        """(target log-probabilities (T, B), state, raw (T, B, H) | None, dropped (T, B, H) | None)."""
        if not self.needs_outputs:
            scores, state = forward(x, state, targets=y)
            return scores, state, None, None
        # Through ``forward`` (maybe the DDP wrapper), so gradients are averaged across ranks.
        scores, state, (raw, dropped) = forward(x, state, return_outputs=True, targets=y)
        return scores, state, raw, dropped

    def loss(self, model, scores: torch.Tensor, raw, dropped) -> torch.Tensor:
        """``scores``: the float32 log-probabilities of the targets, (T, B)."""
        config = self.config
        loss = -scores.mean()
        if config.l1 > 0:
            loss = loss + config.l1 * l1_penalty(model)
        if config.ar > 0:
            loss = loss + config.ar * dropped.float().pow(2).mean()
        if config.tar > 0:
            loss = loss + config.tar * (raw[1:] - raw[:-1]).float().pow(2).mean()
        if config.synonym_weight > 0 and self.pairs is not None and len(self.pairs):
            loss = loss + config.synonym_weight * synonym_distance(model.embedding.weight, self.pairs)
        return loss


def l1_penalty(model: torch.nn.Module) -> torch.Tensor:
    """Sum of |w| over trainable parameters with two or more dimensions (no biases)."""
    terms = [p.abs().sum() for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    return torch.stack(terms).sum()


def synonym_distance(weight: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Mean over pairs of the squared distance of their embedding rows; pairs (P, 2)."""
    diff = weight[pairs[:, 0]] - weight[pairs[:, 1]]  # (P, E)
    return diff.pow(2).sum(dim=1).mean()
