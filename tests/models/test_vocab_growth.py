"""A model moved to a grown vocabulary keeps the rows of the entries both share, bit for bit."""

from __future__ import annotations

import torch

from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.models.vocab_growth import regrow

OLD = ["<eos>", "<unk>", "the", "cat", "sat", "on", "mat", "old"]
NEW = ["<eos>", "<unk>", "the", "on", "new", "cat", "sat", "mat", "brand"]  # "old" dropped, two added


def model(vocab: list[str], **options) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(vocab), emb=6, hidden=6 if options.get("tied") else 10, layers=1,
                         dropout=0.0, **options)
    return build_model(config)


def pairs():
    return [(NEW.index(word), OLD.index(word)) for word in NEW if word in OLD]


def test_full_softmax_rows_and_the_core_are_kept_new_rows_are_fresh():
    old = model(OLD)
    torch.manual_seed(1)
    grown, kept, output = regrow(old, OLD, NEW)
    assert kept == output == 7 and grown.config.vocab_size == len(NEW)
    for new, was in pairs():
        assert torch.equal(grown.embedding.weight[new], old.embedding.weight[was])
        assert torch.equal(grown.decoder.weight[new], old.decoder.weight[was])
        assert torch.equal(grown.decoder.bias[new], old.decoder.bias[was])
    for name, tensor in old.rnn.state_dict().items():
        assert torch.equal(grown.rnn.state_dict()[name], tensor)
    fresh = NEW.index("brand")
    assert not any(torch.equal(grown.embedding.weight[fresh], row) for row in old.embedding.weight)
    assert grown.decoder.bias[fresh].item() == 0.0  # a new model's bias starts at zero


def test_a_tied_model_keeps_one_shared_matrix():
    old = model(OLD, tied=True)
    grown, _, _ = regrow(old, OLD, NEW)
    assert grown.decoder.weight is grown.embedding.weight
    for new, was in pairs():
        assert torch.equal(grown.embedding.weight[new], old.embedding.weight[was])


def test_adaptive_softmax_rows_kept_where_the_layout_keeps_them():
    old_vocab = ["<eos>", "<unk>"] + [f"w{i}" for i in range(30)]
    # w0..w9 stay; w10..w29 move down by 5 places (5 new words before them); 3 new at the end.
    new_vocab = old_vocab[:12] + [f"n{i}" for i in range(5)] + old_vocab[12:] + ["z1", "z2", "z3"]
    old = model(old_vocab, adaptive_softmax="6,16", adaptive_div=2.0)
    grown, kept, output = regrow(old, old_vocab, new_vocab)
    # w10..w13 move from the first tail cluster to the second: fresh output rows.
    assert kept == len(old_vocab) and output == kept - 4 and grown.config.cutoffs == (6, 16)
    head_old, head_new = old.decoder.head.weight, grown.decoder.head.weight
    for word in old_vocab:
        new, was = new_vocab.index(word), old_vocab.index(word)
        if new < 6 and was < 6:
            assert torch.equal(head_new[new], head_old[was])
        elif 16 <= new and 16 <= was:  # the last cluster, on both sides
            assert torch.equal(grown.decoder.tail[1][1].weight[new - 16], old.decoder.tail[1][1].weight[was - 16])
    assert torch.equal(head_new[6:8], head_old[6:8])  # the clusters' own logits
    for cluster in range(2):
        assert torch.equal(grown.decoder.tail[cluster][0].weight, old.decoder.tail[cluster][0].weight)


def test_a_grown_model_scores_a_shared_context_as_before_where_rows_were_kept():
    """Same core, same kept rows: the logits of the shared entries are the old ones."""
    old = model(OLD).eval()
    grown, _, _ = regrow(old, OLD, NEW)
    grown.eval()
    sentence = ["the", "cat", "sat", "on"]
    old_ids = torch.tensor([[OLD.index(w)] for w in sentence])
    new_ids = torch.tensor([[NEW.index(w)] for w in sentence])
    with torch.no_grad():
        old_logits = old.decode(old.hidden_states(old_ids)[0])
        new_logits = grown.decode(grown.hidden_states(new_ids)[0])
    for new, was in pairs():
        assert torch.allclose(new_logits[..., new], old_logits[..., was], atol=1e-6)


def test_a_vocabulary_that_shrinks_below_the_cutoffs_keeps_what_still_fits():
    """A corpus that drops words (a sliding window, a smaller --max-size): a cutoff the new
    vocabulary no longer reaches goes, and with it maybe the width of the others' projections;
    below the first cutoff the layer is a full softmax whose head entries keep their rows."""
    old_vocab = ["<eos>", "<unk>"] + [f"w{i}" for i in range(30)]
    old = model(old_vocab, adaptive_softmax="6,16", adaptive_div=2.0)
    for size in (12, 5):
        grown, kept, output = regrow(old, old_vocab, old_vocab[:size])
        assert kept == size and grown.config.vocab_size == size
        if size == 12:
            assert grown.config.cutoffs == (6,)
            assert torch.equal(grown.decoder.head.weight[:6], old.decoder.head.weight[:6])
        else:
            assert grown.config.cutoffs == () and output == size  # every entry was in the head
            assert torch.equal(grown.decoder.weight, old.decoder.head.weight[:5])
