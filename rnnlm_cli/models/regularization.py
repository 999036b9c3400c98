"""The regularisers of AWD-LSTM (Merity et al., 2018), as functions of tensors.

- embedding dropout: drop whole words, i.e. rows of the embedding matrix, so a dropped
  word is the zero vector everywhere in the batch (Gal & Ghahramani, 2016);
- locked (variational) dropout: one mask per sequence, shared by all time steps;
- weight drop: DropConnect on the hidden-to-hidden matrices (Wan et al., 2013).

Each acts only in training, and each scales what survives by 1/(1-p) so that the
expected value is unchanged and evaluation needs no rescaling.
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F


def keep_mask(like: Tensor, shape: tuple[int, ...], p: float) -> Tensor:
    """A Bernoulli(1-p) mask of ``shape``, already scaled by 1/(1-p), in ``like``'s dtype."""
    return like.new_empty(shape).bernoulli_(1.0 - p) / (1.0 - p)


def embedding_dropout(weight: Tensor, tokens: Tensor, p: float, training: bool) -> Tensor:
    """tokens (T, B) -> embeddings (T, B, E), with whole rows of ``weight`` (V, E) dropped.

    The mask is applied to the weight rather than to the looked-up vectors, so every
    occurrence of a dropped id in the batch gets the same zero vector, and a tied decoder
    still sees (and trains) the unmasked weight.
    """
    if not training or p == 0.0:
        return F.embedding(tokens, weight)
    mask = keep_mask(weight, (weight.shape[0], 1), p)  # (V, 1)
    return F.embedding(tokens, weight * mask)


def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """x (T, B, D) with one mask (1, B, D) for all T steps of each sequence."""
    if not training or p == 0.0:
        return x
    return x * keep_mask(x, (1, x.shape[1], x.shape[2]), p)


def sequence_dropout(x: Tensor, p: float, training: bool, locked: bool) -> Tensor:
    """x (T, B, D): locked dropout when ``locked``, ordinary element-wise dropout otherwise."""
    if locked:
        return locked_dropout(x, p, training)
    return F.dropout(x, p, training)


def weight_drop(weight: Tensor, p: float, training: bool) -> Tensor:
    """DropConnect: ``weight`` with each entry zeroed with probability p (a fresh mask per call).

    The result is a function of the raw parameter, so gradients reach it (zero where dropped).
    """
    if not training or p == 0.0:
        return weight
    return weight * keep_mask(weight, tuple(weight.shape), p)
