"""A run's place under torchrun: the environment, single-process defaults, shards cut by hand, and
the collectives on a one-process gloo group."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist

from rnnlm_cli.errors import LockedError, RnnlmError, UsageError
from rnnlm_cli.train.distributed import (SINGLE, Dist, from_main, gather_to_all, max_all, setup, shard, sum_all,
                                         teardown)

CPU = torch.device("cpu")


def folder_held():
    raise LockedError("the output folder is held")


def test_a_process_alone_is_rank_zero_of_one():
    assert (SINGLE.rank, SINGLE.world_size, SINGLE.enabled, SINGLE.is_main) == (0, 1, False, True)
    assert Dist() == SINGLE
    other = Dist(rank=2, world_size=4)
    assert other.enabled and not other.is_main
    assert Dist(rank=0, world_size=4).is_main


@pytest.mark.parametrize("world_size", [None, "1", "0"])
def test_without_torchrun_setup_joins_nothing(monkeypatch, world_size):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    if world_size is not None:
        monkeypatch.setenv("WORLD_SIZE", world_size)
        monkeypatch.setenv("RANK", "0")
    context, device = setup("cpu")
    assert context is SINGLE
    assert device == CPU
    assert not dist.is_initialized()
    teardown(context)  # nothing to tear down


def test_setup_refuses_a_device_this_machine_lacks_before_joining(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(UsageError):
        setup("cuda")
    assert not dist.is_initialized()


@pytest.mark.parametrize("length, world_size, cuts", [
    # size = length // world_size; rank r gets [r * size, (r + 1) * size); the tail is dropped.
    (10, 2, [(0, 5), (5, 10)]),
    (10, 3, [(0, 3), (3, 6), (6, 9)]),
    (11, 4, [(0, 2), (2, 4), (4, 6), (6, 8)]),
    (3, 4, [(0, 0), (0, 0), (0, 0), (0, 0)]),
])
def test_shards_are_contiguous_disjoint_views(length, world_size, cuts):
    tokens = np.arange(100, 100 + length, dtype=np.uint16)
    for rank, (start, stop) in enumerate(cuts):
        part = shard(tokens, Dist(rank=rank, world_size=world_size))
        assert part.tolist() == list(range(100 + start, 100 + stop))
        assert part.base is tokens  # a view: no copy of the corpus per rank


def test_a_process_alone_keeps_the_whole_stream_and_its_own_values():
    tokens = np.arange(7)
    assert shard(tokens, SINGLE) is tokens
    flags, values = [1.0, 0.0], [1.5, -2.0]
    assert max_all(flags, SINGLE, CPU) is flags
    assert sum_all(values, SINGLE, CPU) is values
    assert gather_to_all({"rng": 3}, SINGLE) == [{"rng": 3}]
    assert from_main(lambda: 42, SINGLE) == 42
    with pytest.raises(LockedError):
        from_main(folder_held, SINGLE)


@pytest.fixture
def one_process_group():
    """A real gloo group of one process (no network: an in-memory store)."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_setup_takes_rank_and_size_from_the_group_it_joined(monkeypatch, one_process_group):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    context, device = setup("cpu")
    # Already initialised (as under torchrun once joined): the group, not the environment, decides.
    assert context == Dist(rank=0, world_size=1)
    assert device == CPU


def test_collectives_run_through_the_group(one_process_group):
    # The group has one member, so each reduction returns this rank's values, now through gloo.
    context = Dist(rank=0, world_size=2)
    assert max_all([1.0, 0.0, 12.5], context, CPU) == [1.0, 0.0, 12.5]
    assert sum_all([0.1, -3.0, 1e300], context, CPU) == [0.1, -3.0, 1e300]  # float64 all the way
    assert from_main(lambda: {"loss": 1.25}, context) == {"loss": 1.25}


def test_an_error_on_rank_zero_keeps_its_type_and_exit_code(one_process_group):
    with pytest.raises(LockedError, match="held") as caught:
        from_main(folder_held, Dist(rank=0, world_size=2))
    assert caught.value.exit_code == 75
    assert isinstance(caught.value, RnnlmError)
