"""Words seen once stand in for <unk> when the training tokens hardly hold it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnlm_cli.text.tokenizers import UNK_ID, ByteTokenizer, WordTokenizer
from rnnlm_cli.train.unk_stand_in import SHARE_RANGE, UnkStandIn

WORDS = WordTokenizer(["<eos>", "<unk>", "a", "b", "c", "d", "e", "f", "g"])


def counts(**by_word: int) -> np.ndarray:
    found = np.zeros(WORDS.vocab_size, dtype=np.int64)
    for word, count in by_word.items():
        found[WORDS.pieces.index(word)] = count
    return found


def test_the_share_is_good_turings_split_of_the_once_seen_words():
    # N1 = 3 (d, e, f), N2 = 1 (c): p = 3 / (3 + 2) = 0.6.
    stand_in = UnkStandIn.for_tokens(counts(a=50, b=9, c=2, d=1, e=1, f=1), WORDS)
    assert stand_in.share == pytest.approx(0.6)
    assert sorted(WORDS.pieces[i] for i in stand_in.rare_ids) == ["d", "e", "f"]


def test_none_when_unk_already_occurs_as_often_as_the_once_seen_words():
    found = counts(a=50, b=9, c=2, d=1, e=1, f=1)
    found[UNK_ID] = 3
    assert UnkStandIn.for_tokens(found, WORDS) is None
    found[UNK_ID] = 2
    assert UnkStandIn.for_tokens(found, WORDS) is not None
    assert UnkStandIn.for_tokens(counts(a=5, b=2), WORDS) is None  # nobody seen once
    assert UnkStandIn.for_tokens(np.ones(257, dtype=np.int64), ByteTokenizer()) is None


def test_the_share_stays_within_its_range():
    assert UnkStandIn.for_tokens(counts(a=9, d=1), WORDS).share == SHARE_RANGE[1]  # N2 = 0 would give 1
    many_twice = counts(a=9, b=2, c=2, d=2, e=2, g=2, f=1)  # 1 / (1 + 10) is below the floor
    assert UnkStandIn.for_tokens(many_twice, WORDS).share == SHARE_RANGE[0]


def test_only_rare_tokens_change_about_share_of_the_time_and_x_y_stay_one_stream():
    stand_in = UnkStandIn.for_tokens(counts(a=50, b=9, c=2, d=1, e=1, f=1), WORDS)  # d, e, f at 0.6
    torch.manual_seed(0)
    stream = torch.randint(2, 8, (4001, 8))  # a to f
    x, y = stand_in(stream[:-1], stream[1:])
    assert torch.equal(x[1:], y[:-1])  # one draw per token: y[t] = x[t + 1] still
    after = torch.cat([x, y[-1:]])
    changed = after != stream
    rare = torch.isin(stream, torch.tensor([5, 6, 7]))
    assert not (changed & ~rare).any()  # a, b, c never change
    assert (after[changed] == UNK_ID).all()
    share = changed.sum().item() / rare.sum().item()
    assert abs(share - 0.6) < 0.02  # about 12,000 rare tokens: the standard error is 0.005


def unk_probability(model_path, lines) -> float:
    """The model's mean probability of <unk> at every position of ``lines``, read as one stream."""
    from rnnlm_cli.store.checkpoint import load_model

    model, tokenizer, _ = load_model(model_path)
    ids = [token for line in lines for token in tokenizer.encode(line) + [0]]
    with torch.no_grad():
        logits, _ = model(torch.tensor(ids)[:, None])
    return torch.softmax(logits.float(), dim=-1)[..., UNK_ID].mean().item()


def test_with_min_count_1_the_trained_model_gives_unk_the_mass_of_the_stand_ins(tmp_path, monkeypatch):
    """Every tenth line of the toy grammar gains a word of its own, seen once: with --min-count 1
    the vocabulary holds them all and the text holds no <unk>. Trained with the stand-ins, the
    model gives <unk> about the share of tokens that stood in for it; without them, next to
    nothing."""
    from conftest import TOY_TRAIN, cli, make_lines, write_lines

    lines = [line + (f" zq{i}" if i % 10 == 0 else "") for i, line in enumerate(make_lines(400, seed=5))]
    corpus = write_lines(tmp_path / "train.txt", lines)
    valid = write_lines(tmp_path / "valid.txt", make_lines(20, seed=6))
    tokens = sum(len(line.split()) + 1 for line in lines)
    stood_in = SHARE_RANGE[1] * 40 / tokens  # 40 words seen once, none twice: p is at its ceiling
    runs = {}
    for name in ("with", "without"):
        if name == "without":
            monkeypatch.setattr(UnkStandIn, "for_tokens", classmethod(lambda cls, counts, tokenizer: None))
        out = tmp_path / name / "m.pt"
        result = cli("train", corpus, "--valid", valid, "--out", out, "--min-count", "1", *TOY_TRAIN)
        assert result.exit_code == 0, result.stderr
        assert ("words seen once stand in for it" in result.stderr) == (name == "with")
        runs[name] = unk_probability(out, make_lines(20, seed=7))
    assert stood_in / 2 < runs["with"] < stood_in * 2, (runs, stood_in)
    assert runs["without"] < runs["with"] / 5, runs
