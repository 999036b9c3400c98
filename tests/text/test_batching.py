"""Batching for truncated BPTT: streams, segments and the held-out tail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnlm_cli.text.batching import bptt_streams, holdout_split, iter_bptt, segment_count
from rnnlm_cli.errors import DataError
from rnnlm_cli.text.tokenfile import TokenFileWriter, open_token_file
from rnnlm_cli.text.tokenizers import ByteTokenizer


def test_streams_are_the_hand_computed_batchify_view():
    tokens = np.arange(13, dtype=np.uint16)
    streams = bptt_streams(tokens, 3)  # L = (13 - 1) // 3 = 4
    assert streams.tolist() == [[0, 1, 2, 3, 4], [4, 5, 6, 7, 8], [8, 9, 10, 11, 12]]
    assert np.shares_memory(streams, tokens)
    assert not streams.flags.writeable


def test_segments_by_hand():
    streams = bptt_streams(np.arange(13, dtype=np.uint16), 3)
    segments = list(iter_bptt(streams, bptt=3))
    assert len(segments) == segment_count(streams, 3) == 2
    (x1, y1), (x2, y2) = segments
    assert x1.dtype == torch.int64 and x1.shape == (3, 3)
    assert x1.tolist() == [[0, 4, 8], [1, 5, 9], [2, 6, 10]]
    assert y1.tolist() == [[1, 5, 9], [2, 6, 10], [3, 7, 11]]
    assert x2.tolist() == [[3, 7, 11]]
    assert y2.tolist() == [[4, 8, 12]]
    resumed = list(iter_bptt(streams, bptt=3, start=3))
    assert len(resumed) == segment_count(streams, 3, start=3) == 1
    assert resumed[0][0].tolist() == x2.tolist()


@pytest.mark.parametrize("length,batch,bptt", [(101, 4, 7), (50, 1, 50), (64, 7, 1)])
def test_segments_concatenate_to_the_streams(length, batch, bptt):
    tokens = (np.arange(length) * 7 % 11).astype(np.uint16)
    streams = bptt_streams(tokens, batch)
    xs, ys = zip(*iter_bptt(streams, bptt))
    assert all(x.shape[0] <= bptt for x in xs)
    assert torch.cat(xs).T.tolist() == streams[:, :-1].tolist()
    assert torch.cat(ys).T.tolist() == streams[:, 1:].tolist()
    assert streams.shape == (batch, (length - 1) // batch + 1)


def test_streams_over_a_token_file(tmp_path):
    path = tmp_path / "c.tok"
    with TokenFileWriter(str(path)) as writer:
        writer.write(np.arange(1, 22))
        writer.close({"tokenizer": ByteTokenizer().to_dict()})
    tokens = open_token_file(str(path)).tokens
    streams = bptt_streams(tokens, 4)
    assert streams.shape == (4, 6)
    assert streams[:, 0:6].tolist() == [[1, 2, 3, 4, 5, 6], [6, 7, 8, 9, 10, 11],
                                        [11, 12, 13, 14, 15, 16], [16, 17, 18, 19, 20, 21]]


def test_too_short_for_batch_size():
    with pytest.raises(DataError, match="too short for batch size 3"):
        bptt_streams(np.arange(3), 3)


TOKENS = np.array([5, 6, 0, 7, 8, 9, 0, 3, 4, 0, 6, 0], dtype=np.uint16)


@pytest.mark.parametrize("fraction,max_tokens,cut", [
    (0.49, 100, 7),   # wants 5: index 7 already follows an <eos>
    (0.25, 100, 10),  # wants 3: index 9 is mid-line, moves forward to 10
    (0.49, 2, 10),    # max_tokens caps the 5 wanted at 2
])
def test_holdout_split_starts_after_eos(fraction, max_tokens, cut):
    train, valid = holdout_split(TOKENS, 0, fraction, max_tokens)
    assert train.tolist() == TOKENS[:cut].tolist() and valid.tolist() == TOKENS[cut:].tolist()
    assert train[-1] == 0
    assert np.shares_memory(train, TOKENS) and np.shares_memory(valid, TOKENS)


@pytest.mark.parametrize("tokens,fraction", [
    (np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 0]), 0.3),  # no line starts in the tail
    (np.array([1, 0, 2, 0]), 0.1),                    # nothing to hold out
])
def test_holdout_split_too_short(tokens, fraction):
    with pytest.raises(DataError, match="--valid"):
        holdout_split(tokens, 0, fraction, 100)
