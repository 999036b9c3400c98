"""Dynamic evaluation (Krause, Kahembwe, Murray & Renals, 2018): adapt while scoring.

The text is scored segment by segment; after a segment is scored, one step on its loss
moves the weights towards it, and a decay pulls them back towards the trained ones
``theta_0``. Two rules:

* **RMS with a global prior** (the paper's section 6, and the default): each weight tensor's
  step is divided by the root mean square ``rms`` of its gradient, measured over segments
  scored by the trained weights (:func:`rnnlm_cli.score.dynamic_fit.gradient_rms`), and a
  tensor whose gradient is usually large is also pulled back harder:

      theta <- theta - lr * g / (rms + eps) + min(decay * rms / mean(rms), 1) * (theta_0 - theta)

  ``mean(rms)`` is the mean over all adapted weights and ``eps`` a tenth of it. The paper
  keeps one ``rms`` per weight, measured on the training text; measured on a few thousand
  tokens of the text being scored, most rows of a 10k vocabulary have never had a gradient,
  and their steps ``g / eps`` send scoring off (on a 1M-word corpus, -0.8% against -25% for
  one RMS per tensor: the README's scoring section). So the RMS here is per tensor.
* **SGD with a global prior**: ``theta <- theta - lr * g + decay * (theta_0 - theta)``.

Which weights adapt: ``output`` (the decoder: nearly all of the gain at a fraction of the
cost, since the recurrent layers run forward only, as in plain scoring) or ``all``.

A segment's probabilities are computed before the step that uses it, so no text is ever
scored by weights that have seen it. :meth:`DynamicEvaluation.back_off` puts the trained
weights back and takes smaller steps when the steps have made the model diverge
(:func:`diverged`).
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from rnnlm_cli.models.lm import detach_state

WEIGHT_SCOPES = ("output", "all")
EPSILON_SHARE = 0.1
"""The RMS rule's ``eps``, as a share of the mean gradient RMS over the adapted weights."""
BACK_OFF = 4.0
"""A diverged rate is divided by this before scoring goes on."""


def adapted_parameters(model: nn.Module, weights: str) -> list[nn.Parameter]:
    """The trainable parameters ``weights`` (one of :data:`WEIGHT_SCOPES`) names, in model order."""
    if weights not in WEIGHT_SCOPES:
        raise ValueError(f"dynamic evaluation adapts one of {WEIGHT_SCOPES}, not {weights!r}")
    chosen = model.parameters() if weights == "all" else model.decoder.parameters()
    return [p for p in chosen if p.requires_grad]


def features_fixed(model: nn.Module, params: Sequence[Tensor]) -> bool:
    """Whether the features the decoder reads stay as the trained weights give them: no
    adapted parameter belongs to a module before the decoder (as a tied embedding does)."""
    upstream = {id(p) for name, module in model.named_children() if name != "decoder" for p in module.parameters()}
    return not any(id(p) in upstream for p in params)


@contextlib.contextmanager
def gradients_on(device_type: str) -> Iterator[None]:
    """Gradients on, dropout stays off (the model is in eval mode); on CUDA without cuDNN,
    whose RNN backward runs only in training mode."""
    disable = torch.backends.cudnn.flags(enabled=False) if device_type == "cuda" else contextlib.nullcontext()
    with torch.enable_grad(), disable:
        yield


def diverged(logprobs: Tensor, vocab_size: int) -> bool:
    """Whether a segment's scores show weights that have diverged: a score that is not finite,
    or a mean loss twice that of a uniform guess over the vocabulary, which no model that
    has learnt anything reaches."""
    if not bool(torch.isfinite(logprobs).all()):
        return True
    return float(-logprobs.detach().double().mean()) > 2.0 * math.log(max(vocab_size, 2))


class DynamicEvaluation:
    """Holds the trained weights and steps the live ones after each scored segment.

    ``rms`` (one number per adapted parameter, in order) selects the RMS rule; without it the
    steps are plain SGD. ``weights`` picks the parameters adapted (:data:`WEIGHT_SCOPES`).
    ``segment``: tokens a step; None: one step for each chunk the scorer hands over.
    """

    def __init__(self, model: nn.Module, lr: float, decay: float = 0.0, rms: Sequence[float] | None = None,
                 weights: str = "all", segment: int | None = None) -> None:
        if not 0 < lr < math.inf:
            raise ValueError("the dynamic-evaluation learning rate must be positive and finite")
        if not 0 <= decay <= 1:
            raise ValueError("the dynamic-evaluation decay must be within [0, 1]")
        self.lr = lr
        self.decay = decay
        self.weights = weights
        self.segment = segment
        self._params = adapted_parameters(model, weights)
        self.features_fixed = features_fixed(model, self._params)
        self._trained = [p.detach().clone() for p in self._params]
        self._device_type = self._params[0].device.type if self._params else "cpu"
        self._scale: list[float] | None = None  # RMS rule: 1 / (rms + eps), per tensor
        self._pull: list[float] | None = None  # RMS rule: min(decay * rms / mean(rms), 1), per tensor
        if rms is not None:
            self._scale, self._pull = rms_factors(rms, self._params, decay)
        self.steps = 0
        self.back_offs = 0

    @property
    def rule(self) -> str:
        return "sgd" if self._scale is None else "rms"

    def scoring(self) -> contextlib.AbstractContextManager:
        return gradients_on(self._device_type)

    def adapt(self, loss: Tensor) -> None:
        """One step on ``loss`` (a scored segment's mean negative log-likelihood)."""
        grads = torch.autograd.grad(loss, self._params, allow_unused=True)
        with torch.no_grad():
            for index, (param, grad, trained) in enumerate(zip(self._params, grads, self._trained)):
                if grad is not None:
                    scale = 1.0 if self._scale is None else self._scale[index]
                    param.add_(grad, alpha=-self.lr * scale)
                pull = self.decay if self._pull is None else self._pull[index]
                if pull:
                    param.lerp_(trained, pull)  # param += pull * (trained - param), in one pass
        self.steps += 1

    def back_off(self) -> None:
        """After steps that made the model diverge: the trained weights back, smaller steps."""
        self.restore()
        self.lr /= BACK_OFF
        self.back_offs += 1

    def copy_weights(self) -> list[Tensor]:
        """A copy of the live adapted weights (see :meth:`load_weights`)."""
        return [p.detach().clone() for p in self._params]

    def load_weights(self, weights: Sequence[Tensor]) -> None:
        with torch.no_grad():
            for param, value in zip(self._params, weights):
                param.copy_(value)

    def restore(self) -> None:
        """Put the trained weights back."""
        self.load_weights(self._trained)


def rms_factors(rms: Sequence[float], params: Sequence[Tensor], decay: float) -> tuple[list[float], list[float]]:
    """The RMS rule's per-tensor step scale ``1 / (rms + eps)`` and pull ``min(decay * rms / mean, 1)``."""
    if len(rms) != len(params):
        raise ValueError("the gradient RMS must have one number per adapted parameter")
    count = sum(p.numel() for p in params)
    mean = sum(float(r) * p.numel() for r, p in zip(rms, params)) / max(count, 1)
    if not (mean > 0 and math.isfinite(mean)):
        raise ValueError("the gradient RMS is zero or not finite: no gradient reached the weights")
    eps = EPSILON_SHARE * mean
    return [1.0 / (float(r) + eps) for r in rms], [min(decay * float(r) / mean, 1.0) for r in rms]


def segment_features(model: nn.Module, x: Tensor, span: slice, state, features: Tensor | None):
    """The features (S, D) of the chunk's segment ``span`` and the state after it: cut from the
    chunk's ``features`` when they are fixed, else computed from ``state``, the graph cut there."""
    if features is not None:
        return features[span], state
    out, state = model.hidden_states(x[span], state)
    return out[:, 0], detach_state(state)


def score_and_adapt(model: nn.Module, dynamic: DynamicEvaluation, x: Tensor, y: Tensor, state,
                    features: Tensor | None = None) -> tuple[Tensor, Tensor, tuple]:
    """Score a chunk (inputs (T, 1), targets (T,)) from ``state`` segment by segment, a step
    after each: the targets' log-probabilities (T,), the features (T, D) and the state after.

    With the features fixed (only the decoder adapts) the recurrent layers run once over the
    whole chunk, as in plain scoring (``features`` may hand them over, computed already).
    A segment the adapted weights score as diverged is scored again by the trained ones,
    from the state before it, and the steps get smaller (:meth:`DynamicEvaluation.back_off`).
    """
    size = dynamic.segment or y.numel()
    if not dynamic.features_fixed:
        features = None
    elif features is None:
        with torch.no_grad():
            out, state = model.hidden_states(x, state)
        features = out[:, 0]
    scores, seen = [], []
    for start in range(0, y.numel(), size):
        span, before = slice(start, start + size), state
        with dynamic.scoring():
            part, state = segment_features(model, x, span, state, features)
            logprobs = model.target_logprobs(part, y[span])
            bad = diverged(logprobs, model.config.vocab_size)
            if not bad:
                dynamic.adapt(-logprobs.mean())  # score first, then adapt on what was just scored
        if bad:
            dynamic.back_off()
            with torch.no_grad():
                part, state = segment_features(model, x, span, before, features)
                logprobs = model.target_logprobs(part, y[span])
        scores.append(logprobs.detach())
        seen.append(part.detach())
    return torch.cat(scores), torch.cat(seen), state
