"""The output layer's shape: ``--adaptive-softmax`` as token counts, shares of the vocabulary, or auto.

The adaptive softmax (Grave et al., 2017) computes a head of the most frequent tokens for
every position and each tail cluster only for the tokens that fall in it, so its cutoffs
must fit the vocabulary. Three ways to give them:

* ``2000,10000``: token counts, for one vocabulary;
* ``3%,15%,45%``: shares of the vocabulary, so one preset fits 5,000 or 500,000 tokens;
* ``auto`` (the default): chosen when training starts from the training tokens' frequencies.
  The head ends where it covers :data:`HEAD_MASS` of the tokens, kept between
  :data:`HEAD_SHARE` of the vocabulary (a head much larger costs more than it saves, since
  rare words are cheap in a tail); each tail ends where the covered mass reaches the next of
  :data:`TAIL_MASSES`. A vocabulary below :data:`MIN_VOCAB`, or a tied model, gets the full
  softmax: there the softmax is not what costs.

Ids must be in frequency order, as word and char vocabularies are (sentencepiece's roughly).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable

from rnnlm_cli.errors import UsageError

if TYPE_CHECKING:  # numpy loads with the data; --help reads this module without it
    import numpy as np

AUTO = "auto"
HEAD_MASS = 0.7
"""Share of the training tokens the auto head covers. With :data:`TAIL_MASSES` it gives
WikiText-2 about the 1000,5000,15000 that ``wt2-cpu-quick`` was tuned to on 2 CPU cores: a
larger head costs every token more than it saves on the rare ones."""
HEAD_SHARE = (0.01, 0.08)
"""Least and most of the vocabulary the auto head holds."""
TAIL_MASSES = (0.87, 0.96)
"""Covered mass at which each auto tail cluster ends."""
MIN_VOCAB = 4000
"""Below this vocabulary size auto keeps the full softmax (``bench/cost_table.py``: the gain
at 10,000 tokens is 1.8-6x, and shrinks with the vocabulary)."""
_MIN_CLUSTER = 8
_COUNTS = re.compile(r"^\d+(,\d+)*$")
_SHARES = re.compile(r"^\d+(\.\d+)?%(,\d+(\.\d+)?%)*$")


def check_spec(text: str) -> None:
    """Refuse an ``--adaptive-softmax`` value that is none of the three forms (UsageError, exit 2)."""
    spec = text.replace(" ", "")
    if spec in ("", AUTO):
        return
    if _COUNTS.match(spec):
        counts = [int(part) for part in spec.split(",")]
        if all(c > 0 for c in counts) and counts == sorted(set(counts)):
            return
    elif _SHARES.match(spec):
        shares = [float(part[:-1]) for part in spec.split(",")]
        if all(0 < s < 100 for s in shares) and shares == sorted(set(shares)):
            return
    raise UsageError(f"--adaptive-softmax must be increasing token counts like 2000,10000, shares of the "
                     f"vocabulary like 3%,15%,45%, or auto; got {text!r}")


def is_fixed(text: str) -> bool:
    """Whether the cutoffs follow from the spec and the vocabulary size alone (not auto)."""
    return text.replace(" ", "") != AUTO


def cutoffs_for(text: str, vocab_size: int) -> tuple[int, ...]:
    """The cutoffs ``text`` names for a vocabulary of ``vocab_size``; () for the full softmax
    and for auto not yet chosen (see :func:`choose_cutoffs`)."""
    spec = text.replace(" ", "")
    if spec in ("", AUTO):
        return ()
    check_spec(spec)
    if spec.endswith("%"):
        bounds = [max(1, round(float(part[:-1]) / 100 * vocab_size)) for part in spec.split(",")]
        return tuple(sorted(set(bounds)))
    return tuple(int(part) for part in spec.split(","))


def token_counts(blocks: Iterable[np.ndarray], vocab_size: int) -> np.ndarray:
    """How often each id occurs, read block by block (a corpus is never held whole)."""
    import numpy as np

    counts = np.zeros(vocab_size, dtype=np.int64)
    for block in blocks:
        counts += np.bincount(np.asarray(block, dtype=np.int64), minlength=vocab_size)[:vocab_size]
    return counts


def stream_token_counts(tokens, vocab_size: int) -> np.ndarray:
    """:func:`token_counts` of a token stream: a token file's view, read block by block, or an array."""
    return token_counts(tokens.blocks() if hasattr(tokens, "blocks") else [tokens], vocab_size)


def choose_cutoffs(counts: np.ndarray, tied: bool = False) -> tuple[tuple[int, ...], str]:
    """Auto cutoffs for ids with these ``counts`` (id order), and one line saying why."""
    import numpy as np

    vocab = len(counts)
    if tied:
        return (), "full softmax: a tied model shares the embedding with the output (auto keeps it)"
    if vocab < MIN_VOCAB:
        return (), f"full softmax: {vocab:,} tokens in the vocabulary (auto chooses an adaptive one from {MIN_VOCAB:,})"
    total = max(int(counts.sum()), 1)
    covered = np.cumsum(counts) / total  # covered[k]: share of tokens with id <= k
    low, high = (max(_MIN_CLUSTER, round(share * vocab)) for share in HEAD_SHARE)
    head = int(np.clip(np.searchsorted(covered, HEAD_MASS) + 1, low, high))
    cutoffs = [head]
    for mass in TAIL_MASSES:
        bound = max(int(np.searchsorted(covered, mass)) + 1, cutoffs[-1] + _MIN_CLUSTER)
        if bound >= vocab - _MIN_CLUSTER:
            break
        cutoffs.append(bound)
    shares = ", ".join(f"{covered[c - 1]:.0%}" for c in cutoffs)
    return tuple(cutoffs), (f"adaptive softmax {','.join(map(str, cutoffs))}: the clusters end where the "
                            f"training tokens are {shares} covered ({vocab:,} tokens in the vocabulary)")
