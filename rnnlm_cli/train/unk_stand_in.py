"""``<unk>`` is always trained: words seen once stand in for it.

A vocabulary learned with ``--min-count 1`` holds every word of the corpus, so the training
tokens hold no ``<unk>`` and the model never learns how likely an unseen word is: when it
meets one, the word costs whatever an untrained output row gives. The classic
toolkits train ``<unk>`` on the words under a count cutoff; here ``--min-count`` keeps its
promise (every word seen that often has its own entry), and instead each occurrence of a
word seen once in the training tokens is read as ``<unk>``, as input and as target, with
probability

    p = N1 / (N1 + 2 N2)

drawn afresh each time its segment is trained on. N1 and N2 count the words seen once and
twice: Good-Turing estimates the probability of an unseen word as N1/N and that of the words
seen once as 2 N2/N, while the corpus gives the two together N1 occurrences, so they are
split in that ratio (kept within :data:`SHARE_RANGE`, so each side gets some).

Nothing stands in when the training tokens already hold at least N1 ``<unk>``: words under
``--min-count``, a kept ``--init-from`` vocabulary or a corpus that spells ``<unk>`` itself
(Penn Treebank, WikiText) train it on real occurrences. Byte and sentencepiece tokenizers
have no unknown tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rnnlm_cli.text.tokenizers import EOS_ID, UNK_ID

KINDS = ("word", "char")
"""Tokenizers whose unknown tokens are ``<unk>``: byte and sentencepiece (byte fallback) have none."""
SHARE_RANGE = (0.1, 0.9)
"""Least and most of a once-seen word's occurrences read as ``<unk>``."""


class UnkStandIn:
    """Reads occurrences of the ids in ``rare`` as ``<unk>`` with probability ``share``."""

    def __init__(self, rare: np.ndarray, share: float, counts: dict[str, int], vocab_size: int) -> None:
        self.rare_ids = rare
        self.vocab_size = vocab_size
        self.share = share
        self.counts = counts
        """N, N1, N2 and the ``<unk>`` tokens the choice was made from, for the log."""
        self._mask: torch.Tensor | None = None

    @classmethod
    def for_tokens(cls, counts: np.ndarray, tokenizer: Any) -> "UnkStandIn | None":
        """The stand-in for training tokens whose ids occur ``counts`` times, or None when
        ``<unk>`` needs none (see the module's docstring)."""
        if tokenizer.kind not in KINDS:
            return None
        entries = counts.copy()
        entries[[EOS_ID, UNK_ID]] = 0
        once, twice = int((entries == 1).sum()), int((entries == 2).sum())
        if once == 0 or int(counts[UNK_ID]) >= once:
            return None
        low, high = SHARE_RANGE
        share = min(max(once / (once + 2 * twice), low), high)
        figures = {"tokens": int(entries.sum()), "once": once, "twice": twice, "unk": int(counts[UNK_ID])}
        return cls(np.flatnonzero(entries == 1), share, figures, len(counts))

    def note(self) -> str:
        figures = self.counts
        return (f"<unk>: the corpus gives it {figures['unk']:,} occurrence(s), so the {figures['once']:,} words seen "
                f"once stand in for it, each occurrence read as <unk> with probability {self.share:.2f} "
                f"(Good-Turing: N1 / (N1 + 2 N2), N2 = {figures['twice']:,})")

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x, y (T, B) with ``y[t] = x[t + 1]`` -> the same with the drawn occurrences read as
        ``<unk>``; a token is drawn once, so it is ``<unk>`` as a target and as the next input alike."""
        if self._mask is None or self._mask.device != x.device:
            mask = torch.zeros(self.vocab_size, dtype=torch.bool)
            mask[torch.from_numpy(self.rare_ids)] = True
            self._mask = mask.to(x.device)
        tokens = torch.cat([x, y[-1:]])  # (T + 1, B)
        drawn = self._mask[tokens] & (torch.rand(tokens.shape, device=tokens.device) < self.share)
        tokens = tokens.masked_fill(drawn, UNK_ID)
        return tokens[:-1], tokens[1:]
