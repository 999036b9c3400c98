"""A continuous cache over recent hidden states, mixed into the model at scoring time.

Grave, Joulin and Usunier, "Improving neural language models with a continuous cache"
(ICLR 2017):

    p(w | h_t)       = (1 - L) * p_model(w | h_t) + L * p_cache(w | h_t)
    p_cache(w | h_t) ∝ sum over the last N positions i < t of 1[y_i = w] * exp(theta * <h_t, h_i>)

``h_i`` is the feature vector the decoder read at position i and ``y_i`` the token that
followed it. Only the target's probability is ever needed, so the cache never builds a
(T, V) distribution: p_cache(y_t) is the share of the window's weight held by entries whose
stored target equals y_t. With an empty window (the first position of a stream) the model
is used alone.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class NeuralCache:
    """The last ``size`` (feature, target) pairs of one stream, and the mixture they give."""

    def __init__(self, size: int, theta: float, weight: float) -> None:
        if size < 1:
            raise ValueError(f"cache size must be at least 1, got {size}")
        # Written as ``not (a <= x)`` so that NaN fails too.
        if not (0.0 <= theta and math.isfinite(theta)):
            raise ValueError(f"cache theta must be a finite number >= 0, got {theta}")
        if not (0.0 <= weight <= 1.0):
            raise ValueError(f"cache weight must be between 0 and 1, got {weight}")
        self.size = int(size)
        self.theta = float(theta)
        self.weight = float(weight)
        self._keys: Tensor | None = None  # (M, D), M <= size
        self._targets: Tensor | None = None  # (M,)

    def __len__(self) -> int:
        return 0 if self._targets is None else int(self._targets.shape[0])

    def reset(self) -> None:
        """Forget the stream: the next position scores with the model alone."""
        self._keys = None
        self._targets = None

    @torch.no_grad()
    def mix(self, features: Tensor, targets: Tensor, model_logprobs: Tensor) -> Tensor:
        """Natural-log probability (T,) of each target under the mixture; then remember the chunk.

        features (T, D), targets (T,) long, model_logprobs (T,) holding log p_model(y_t).
        Position t sees the memory and the chunk's positions before t, at most ``size`` back.
        The result has model_logprobs' dtype, at least float32.
        """
        steps = targets.shape[0]
        if features.dim() != 2 or features.shape[0] != steps or model_logprobs.shape != (steps,):
            raise ValueError(
                f"cache expects features (T, D), targets (T,), log-probs (T,); got "
                f"{tuple(features.shape)}, {tuple(targets.shape)}, {tuple(model_logprobs.shape)}"
            )
        device = features.device
        # float64 is cheap on the CPU and makes chunking invisible; GPUs are slow at it.
        dtype = torch.float64 if device.type == "cpu" else torch.float32
        keys_new = features.detach().to(dtype)  # (T, D)
        targets = targets.detach().to(device=device, dtype=torch.long)
        out_dtype = torch.promote_types(model_logprobs.dtype, torch.float32)

        keys, stored = self._extended(keys_new, targets)  # (M + T, D), (M + T,)
        if self.weight == 0.0 or steps == 0:
            self._keep(keys, stored)
            return model_logprobs
        memory = keys.shape[0] - steps

        # Entry j sits at stream offset j, query t at offset M + t: visible when
        # M + t - size <= j < M + t.
        query_pos = torch.arange(steps, device=device).unsqueeze(1) + memory  # (T, 1)
        key_pos = torch.arange(memory + steps, device=device).unsqueeze(0)  # (1, M + T)
        visible = (key_pos < query_pos) & (key_pos >= query_pos - self.size)  # (T, M + T)
        same = stored.unsqueeze(0) == targets.unsqueeze(1)  # (T, M + T)

        scores = self.theta * (keys_new @ keys.T)  # (T, M + T)
        neg_inf = torch.tensor(float("-inf"), dtype=dtype, device=device)
        log_total = torch.logsumexp(torch.where(visible, scores, neg_inf), dim=1)  # (T,)
        log_hit = torch.logsumexp(torch.where(visible & same, scores, neg_inf), dim=1)  # (T,)
        log_cache = log_hit - log_total  # (T,), -inf when y_t is not in the window

        model = model_logprobs.detach().to(device=device, dtype=dtype)
        # log(0) = -inf keeps weight 1 exact: the model term drops out.
        log_keep = math.log1p(-self.weight) if self.weight < 1.0 else float("-inf")
        mixed = torch.logaddexp(model + log_keep, log_cache + math.log(self.weight))  # (T,)
        # An empty window would give -inf - -inf = NaN; those positions take the model as is.
        alone = model_logprobs.to(device=device, dtype=out_dtype)
        result = torch.where(visible.any(dim=1), mixed.to(out_dtype), alone)

        self._keep(keys, stored)
        return result

    def _extended(self, keys: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """The memory followed by a chunk's (T, D) keys and (T,) targets."""
        if self._keys is None:
            return keys, targets
        return (torch.cat([self._keys.to(device=keys.device, dtype=keys.dtype), keys]),
                torch.cat([self._targets.to(targets.device), targets]))

    def _keep(self, keys: Tensor, targets: Tensor) -> None:
        """Remember the newest ``size`` entries of the extended memory."""
        # clone() so a long chunk's tail does not pin the whole chunk's storage.
        self._keys = keys[-self.size:].clone()
        self._targets = targets[-self.size:].clone()
