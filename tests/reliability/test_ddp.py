"""Data-parallel training (two CPU processes, gloo), checked step by step against a plain loop.

Each rank is this file run as a script with the environment torchrun gives its workers
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and calls the library's own
``run_training``. A few names the trainer looks up are wrapped there, only to record what
the rank trained on, its weights after every optimizer step and what it wrote.

The corpus is 84 distinct words and ``<eos>``: N = 85 tokens, each id at one position, so
a token id says where in the corpus it came from. With 2 ranks, 3 streams per rank and
bptt 4 the sharding gives, by hand:

    shard size S = 85 // 2 = 42      rank 0: positions 0..41, rank 1: 42..83, 84 dropped
    stream length L = (42 - 1) // 3 = 13, segments of 4, 4, 4, 1 tokens (4 steps an epoch)
    rank r, stream b covers positions r*42 + 13*b .. r*42 + 13*b + 13
    targets: rank 0 positions 1..39, rank 1 positions 43..81; never a target: 0 (nothing
    precedes it), 40-41 and 82-83 (each shard's tail after its 3 * 13 + 1 tokens), 42
    (the pair 41 -> 42 crosses the shard boundary) and 84 (the remainder of 85 / 2).

A single process with 6 streams cuts the corpus at other places (stream b at 14 * b), so
it trains on other segments: the reference is a plain loop over the ranks' own 6 streams,
with the model's logits, torch's mean cross-entropy over all 6 streams and torch's SGD.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

WORLD = 2
STREAMS = 3  # per rank
BPTT = 4
EPOCHS = 2
LR = 1.0
WORDS = 84
N, S, L = 85, 42, 13
SEGMENTS = [(0, 4), (4, 4), (8, 4), (12, 1)]  # (first stream position, length) of each step
TOLERANCE = 1e-5

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")


def _model_config(vocab_size: int):
    from rnnlm_cli.models.config import ModelConfig

    return ModelConfig(vocab_size=vocab_size, cell="lstm", emb=8, hidden=16, layers=1, dropout=0.0)


def _train_config():
    from rnnlm_cli.config import TrainConfig

    # SGD without clipping: an update is proportional to the averaged gradient, so a rank
    # that summed gradients, or used only its own, would move twice as far or elsewhere
    # (Adam and clipping would hide the scale).
    return TrainConfig(lr=LR, optimizer="sgd", clip=0.0, batch_size=STREAMS, bptt=BPTT, epochs=EPOCHS,
                       device="cpu", deterministic=True, log_interval=1, eval_batch_size=2, amp="off",
                       schedule="constant")  # the same rate at every step: each process plans its own steps


def _worker(rank: int, folder: Path) -> None:
    """One rank: train through ``run_training`` and save what was observed to rank<r>.pt."""
    torch.set_num_threads(1)
    from torch.optim.optimizer import (
        register_optimizer_step_post_hook,
        register_optimizer_step_pre_hook,
    )

    from rnnlm_cli.train import loop as trainer, run_files
    from rnnlm_cli.train.job import TrainJob
    from rnnlm_cli.train.run import run_training

    seen = {"shard": None, "epochs": [], "initial": None, "after_step": [], "saves": [], "metrics": []}

    def flat(optimizer) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for g in optimizer.param_groups for p in g["params"]]).clone()

    def before_step(optimizer, args, kwargs):
        if seen["initial"] is None:
            seen["initial"] = flat(optimizer)

    register_optimizer_step_pre_hook(before_step)
    register_optimizer_step_post_hook(lambda optimizer, args, kwargs: seen["after_step"].append(flat(optimizer)))

    real_streams, real_iter, real_save, real_metrics = (trainer.bptt_streams, trainer.iter_bptt,
                                                        run_files.save_checkpoint, trainer.MetricsLog)

    def streams(tokens, batch_size):
        seen["shard"] = torch.from_numpy(tokens.astype("int64"))
        return real_streams(tokens, batch_size)

    def segments(*args, **kwargs):
        epoch = []
        seen["epochs"].append(epoch)
        for x, y in real_iter(*args, **kwargs):
            epoch.append((x.clone(), y.clone()))
            yield x, y

    def save(path, *args, **kwargs):
        seen["saves"].append(os.path.basename(path))
        return real_save(path, *args, **kwargs)

    def metrics(path, append):
        seen["metrics"].append(path)
        return real_metrics(path, append)

    trainer.bptt_streams, trainer.iter_bptt = streams, segments
    run_files.save_checkpoint, trainer.MetricsLog = save, metrics
    # Every word of this corpus is seen once, so words would stand in for <unk> at random
    # (train/unk_stand_in.py); the hand-computed steps below read the text as it is.
    from rnnlm_cli.train.unk_stand_in import UnkStandIn

    UnkStandIn.for_tokens = classmethod(lambda cls, counts, tokenizer: None)

    job = TrainJob(corpus=str(folder / "corpus.txt"), valid=str(folder / "valid.txt"), out=str(folder / "out" / "model.pt"),
                   model=_model_config(2), train=_train_config())
    result = run_training(job)
    torch.save({**seen, "steps": result.steps}, folder / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Train once on two ranks; every rank's records, the token ids and the output folder."""
    from rnnlm_cli.text.tokenfile import open_token_file

    folder = tmp_path_factory.mktemp("ddp")
    words = [f"w{i:03d}" for i in range(WORDS)]
    (folder / "corpus.txt").write_text(" ".join(words) + "\n")
    (folder / "valid.txt").write_text(" ".join(words[::3]) + "\n")
    port = _free_port()
    workers = []
    for rank in range(WORLD):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        workers.append(subprocess.Popen([sys.executable, __file__, str(rank), str(folder)], cwd=folder, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    errors = []
    for rank, worker in enumerate(workers):
        try:
            _, err = worker.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for other in workers:
                other.kill()
            pytest.fail(f"rank {rank} did not finish in 120 s")
        if worker.returncode != 0:
            errors.append(f"rank {rank} exited {worker.returncode}:\n{err.decode()[-3000:]}")
    assert not errors, "\n".join(errors)
    token_file = open_token_file(folder / "out" / "model.train.tok")
    ranks = [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    return {"folder": folder, "tokens": torch.from_numpy(token_file.tokens.astype("int64")),
            "vocab_size": token_file.tokenizer.vocab_size, "ranks": ranks}


def _expected_segment(tokens: torch.Tensor, rank: int, begin: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank ``rank``'s (x, y), each (T, B), for stream positions begin..begin+length, by hand."""
    starts = [rank * S + b * L + begin for b in range(STREAMS)]
    x = torch.stack([tokens[s:s + length] for s in starts], dim=1)
    y = torch.stack([tokens[s + 1:s + length + 1] for s in starts], dim=1)
    return x, y


def test_the_corpus_has_the_shape_the_hand_computed_cuts_assume(run):
    tokens = run["tokens"]
    assert len(tokens) == N and len(set(tokens.tolist())) == N  # every id at one position
    assert (N // WORLD, (N // WORLD - 1) // STREAMS) == (S, L)
    assert [r["steps"] for r in run["ranks"]] == [EPOCHS * len(SEGMENTS)] * WORLD


def test_ranks_get_disjoint_shards_and_train_on_every_target_but_the_cut_ones(run):
    tokens = run["tokens"]
    position = {int(t): i for i, t in enumerate(tokens)}
    shards = [r["shard"] for r in run["ranks"]]
    assert torch.equal(shards[0], tokens[0:42]) and torch.equal(shards[1], tokens[42:84])

    trained = []  # corpus position of every target, over both ranks, in the first epoch
    for rank, record in enumerate(run["ranks"]):
        assert len(record["epochs"]) == EPOCHS
        assert record["epochs"][0] and all(
            torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
            for a, b in zip(record["epochs"][0], record["epochs"][1], strict=True))  # each epoch the same data
        for (x, y), (begin, length) in zip(record["epochs"][0], SEGMENTS, strict=True):
            want_x, want_y = _expected_segment(tokens, rank, begin, length)
            assert torch.equal(x, want_x) and torch.equal(y, want_y)
            targets = [position[int(t)] for t in y.reshape(-1)]
            assert [position[int(t)] for t in x.reshape(-1)] == [p - 1 for p in targets]  # x precedes y
            trained += targets
    assert len(trained) == len(set(trained))  # no target twice, on one rank or across ranks
    assert sorted(trained) == [*range(1, 40), *range(43, 82)]
    assert set(range(N)) - set(trained) == {0, 40, 41, 42, 82, 83, 84}


def test_every_rank_holds_the_same_weights_after_every_step(run):
    first, second = run["ranks"]
    assert torch.equal(first["initial"], second["initial"])
    assert len(first["after_step"]) == len(second["after_step"]) == EPOCHS * len(SEGMENTS)
    for step, (a, b) in enumerate(zip(first["after_step"], second["after_step"]), start=1):
        assert torch.equal(a, b), f"step {step}: ranks differ by {float((a - b).abs().max()):.3g}"


def test_two_ranks_train_like_one_process_over_both_ranks_streams(run):
    from rnnlm_cli.models.lm import build_model

    tokens, record = run["tokens"], run["ranks"][0]
    model = build_model(_model_config(run["vocab_size"]))
    torch.nn.utils.vector_to_parameters(record["initial"].clone(), model.parameters())  # not a view of it
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    after_step = []
    for _ in range(EPOCHS):
        state = None  # every epoch starts the streams from a zero state
        for begin, length in SEGMENTS:
            pieces = [_expected_segment(tokens, rank, begin, length) for rank in range(WORLD)]
            x = torch.cat([p[0] for p in pieces], dim=1)  # (T, 2B): rank 0's streams, then rank 1's
            y = torch.cat([p[1] for p in pieces], dim=1)
            logits, state = model(x, state)  # (T, 2B, V)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            state = tuple(s.detach() for s in state)
            after_step.append(torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone())

    moved = float((after_step[-1] - record["initial"]).abs().max())
    assert moved > 1000 * TOLERANCE  # the comparison below can tell training from no training
    for step, (want, got) in enumerate(zip(after_step, record["after_step"], strict=True), start=1):
        assert torch.allclose(got, want, rtol=0, atol=TOLERANCE), \
            f"step {step}: off by {float((got - want).abs().max()):.3g}"


def test_only_rank_zero_writes_the_checkpoints_and_metrics(run):
    from rnnlm_cli.store.checkpoint import load_checkpoint
    from rnnlm_cli.models.lm import build_model

    folder, (main, other) = run["folder"] / "out", run["ranks"]
    assert other["saves"] == [] and other["metrics"] == [None]
    assert main["metrics"] == [str(folder / "model.metrics.jsonl")]
    assert main["saves"].count("model.last.pt") == EPOCHS and set(main["saves"]) == {"model.pt", "model.last.pt"}
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.last.pt", "model.metrics.jsonl", "model.pt", "model.train.tok", "model.valid.tok"]

    records = [json.loads(line) for line in (folder / "model.metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "train"] == list(range(1, EPOCHS * len(SEGMENTS) + 1))
    valid = [r for r in records if r["event"] == "valid"]
    assert [r["step"] for r in valid] == [len(SEGMENTS) * e for e in range(1, EPOCHS + 1)]
    assert main["saves"].count("model.pt") == sum(r["best"] for r in valid)

    model = build_model(_model_config(run["vocab_size"]))
    model.load_state_dict(load_checkpoint(folder / "model.last.pt").state_dict)
    assert torch.equal(torch.nn.utils.parameters_to_vector(model.parameters()), main["after_step"][-1])


if __name__ == "__main__":
    _worker(int(sys.argv[1]), Path(sys.argv[2]))
