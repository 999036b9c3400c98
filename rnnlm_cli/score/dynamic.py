"""Dynamic evaluation (Krause, Kahembwe, Murray & Renals, 2018): adapt while scoring.

The text is scored segment by segment; after a segment is scored, one SGD step on its
loss moves the weights towards it, and a decay pulls them back towards the trained ones:

    theta <- theta - lr * grad L(segment) + decay * (theta_0 - theta)

(the paper's "SGD with a global prior"). A segment's probabilities are computed before
the step that uses it, so no text is ever scored by weights that have seen it.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import Tensor, nn


class DynamicEvaluation:
    """Holds the trained weights and steps the live ones after each scored segment."""

    def __init__(self, model: nn.Module, lr: float, decay: float = 0.0) -> None:
        if not 0 < lr < math.inf:
            raise ValueError("the dynamic-evaluation learning rate must be positive and finite")
        if not 0 <= decay <= 1:
            raise ValueError("the dynamic-evaluation decay must be within [0, 1]")
        self.lr = lr
        self.decay = decay
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._trained = [p.detach().clone() for p in self._params]
        self._device_type = self._params[0].device.type if self._params else "cpu"
        self.steps = 0

    @contextlib.contextmanager
    def scoring(self) -> Iterator[None]:
        """Gradients on, dropout stays off (the model is in eval mode); on CUDA without
        cuDNN, whose RNN backward runs only in training mode."""
        disable = (torch.backends.cudnn.flags(enabled=False) if self._device_type == "cuda"
                   else contextlib.nullcontext())
        with torch.enable_grad(), disable:
            yield

    def adapt(self, loss: Tensor) -> None:
        """One step on ``loss`` (a scored segment's mean negative log-likelihood)."""
        grads = torch.autograd.grad(loss, self._params, allow_unused=True)
        with torch.no_grad():
            for param, grad, trained in zip(self._params, grads, self._trained):
                if grad is not None:
                    param.add_(grad, alpha=-self.lr)
                if self.decay:
                    param.add_(trained - param, alpha=self.decay)
        self.steps += 1

    def restore(self) -> None:
        """Put the trained weights back."""
        with torch.no_grad():
            for param, trained in zip(self._params, self._trained):
                param.copy_(trained)
