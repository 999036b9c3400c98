"""A trained model moved to another vocabulary: the rows of the entries both vocabularies
share are kept, the others start as a fresh model's do.

Only the embedding and the output layer have a row per vocabulary entry; every other weight
(the recurrent core, attention, the projection of a tied model) is copied whole. In the
output layer an entry keeps its row where the layout keeps it:

* full softmax: its decoder row and bias;
* adaptive softmax (Grave et al., 2017): its head row while it stays in the head, or its row
  of tail cluster *i* while it stays in cluster *i* (each cluster's projection is copied whole);
  an entry that moves between clusters starts fresh, since the rows have other widths.
  The cutoffs are kept, less any that the new vocabulary no longer reaches; with fewer
  clusters the projections may narrow (``ModelConfig.adaptive_div_value``), and a cluster
  whose width changed starts fresh. With no cutoff left the layer becomes a full softmax,
  whose rows for the old head's entries are the head's.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Sequence

import torch
from torch import nn

from rnnlm_cli.models.lm import RNNLM, build_model


def regrow(model: RNNLM, old_pieces: Sequence[str], new_pieces: Sequence[str]) -> tuple[RNNLM, int, int]:
    """A model over ``new_pieces`` with ``model``'s weights for the entries of ``old_pieces`` it
    shares (matched by their text, position 0 and 1 being ``<eos>`` and ``<unk>`` in both);
    ``(the model, entries that kept their embedding row, entries that kept their output row)``.
    Fresh rows come from torch's generator, as a new model's do."""
    config = model.config
    cutoffs = tuple(c for c in config.cutoffs if c < len(new_pieces))
    spec = ",".join(map(str, cutoffs)) if config.cutoffs else config.adaptive_softmax
    grown = build_model(dataclasses.replace(config, vocab_size=len(new_pieces), adaptive_softmax=spec))
    old_index = {piece: i for i, piece in enumerate(old_pieces)}
    pairs = [(new, old_index[piece]) for new, piece in enumerate(new_pieces) if piece in old_index]
    new_ids = torch.tensor([new for new, _ in pairs], dtype=torch.long)
    old_ids = torch.tensor([old for _, old in pairs], dtype=torch.long)
    with torch.no_grad():
        _copy_unchanged(model, grown)
        grown.embedding.weight[new_ids] = model.embedding.weight[old_ids]
        if isinstance(model.decoder, nn.Linear):
            if not config.tied:
                grown.decoder.weight[new_ids] = model.decoder.weight[old_ids]
            grown.decoder.bias[new_ids] = model.decoder.bias[old_ids]
            output_kept = len(pairs)
        elif isinstance(grown.decoder, nn.Linear):  # every cutoff dropped: the head's entries keep their rows
            head = old_ids < model.decoder.shortlist_size
            grown.decoder.weight[new_ids[head]] = model.decoder.head.weight[old_ids[head]]
            output_kept = int(head.sum())
        else:
            output_kept = _copy_adaptive(model.decoder, grown.decoder, new_ids, old_ids)
    return grown, len(pairs), output_kept


def _copy_unchanged(model: RNNLM, grown: RNNLM) -> None:
    """Every weight whose shape the vocabulary does not set, copied whole."""
    source = model.state_dict()
    for name, tensor in grown.state_dict().items():
        if name in source and source[name].shape == tensor.shape and not name.startswith(("embedding.", "decoder.")):
            tensor.copy_(source[name])


def _copy_adaptive(old: nn.AdaptiveLogSoftmaxWithLoss, new: nn.AdaptiveLogSoftmaxWithLoss,
                   new_ids: torch.Tensor, old_ids: torch.Tensor) -> int:
    """Rows of entries that stay in the head, or in the same tail cluster of the same width,
    and the clusters' own head rows and projections; how many entries kept their row."""
    shortlist = new.shortlist_size
    clusters = min(old.n_clusters, new.n_clusters)
    # The head scores the shortlist, then one logit per cluster.
    new.head.weight[shortlist:shortlist + clusters] = old.head.weight[old.shortlist_size:old.shortlist_size + clusters]
    new_cluster = [bisect.bisect_right(new.cutoffs, int(i)) for i in new_ids]
    old_cluster = [bisect.bisect_right(old.cutoffs, int(i)) for i in old_ids]
    kept = 0
    for cluster in range(clusters + 1):
        if cluster > 0:
            projection, before = new.tail[cluster - 1][0].weight, old.tail[cluster - 1][0].weight
            if projection.shape != before.shape:
                continue  # fewer clusters, other widths: the cluster starts fresh
            projection.copy_(before)
        chosen = [k for k, (a, b) in enumerate(zip(new_cluster, old_cluster)) if a == b == cluster]
        if not chosen:
            continue
        to, came = new_ids[chosen], old_ids[chosen]
        kept += len(chosen)
        if cluster == 0:
            new.head.weight[to] = old.head.weight[came]
            continue
        start_new, start_old = new.cutoffs[cluster - 1], old.cutoffs[cluster - 1]
        new.tail[cluster - 1][1].weight[to - start_new] = old.tail[cluster - 1][1].weight[came - start_old]
    return kept
