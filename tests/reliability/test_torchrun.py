"""Training under torchrun (two CPU processes, gloo): rank 0 writes, all ranks stop together."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rnnlm_cli.store.checkpoint import load_checkpoint

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "train.txt"
MODEL = ["--hidden", "16", "--emb", "8", "--layers", "1", "--batch-size", "4", "--bptt", "10",
         "--device", "cpu", "--deterministic", "--dropout", "0.2", "--schedule", "constant"]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")


def _torchrun(args, cwd, **popen):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", str(29500 + os.getpid() % 1000), "-m", "rnnlm_cli", "train", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


@pytest.fixture
def corpus(tmp_path):
    lines = SAMPLE.read_text().splitlines()[:1500]
    path = tmp_path / "c.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _weights(path):
    return load_checkpoint(path).state_dict


def test_two_ranks_train_and_only_rank_zero_writes(tmp_path, corpus):
    run = _torchrun([str(corpus), *MODEL, "--max-steps", "30", "--log-interval", "10", "--out", "a/model.pt"], tmp_path)
    out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err.decode()
    assert out.decode().count("best valid ppl") == 1  # one report for the run
    metrics = (tmp_path / "a" / "model.metrics.jsonl").read_text().splitlines()
    assert sum('"event": "train"' in line for line in metrics) == 3  # written once, not per rank
    state = load_checkpoint(tmp_path / "a" / "model.last.pt").training_state
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    # Each rank trains on its own shard, so the carried hidden states differ.
    assert not torch.equal(state["ranks"][0]["hidden"][0], state["ranks"][1]["hidden"][0])


def test_sigterm_stops_every_rank_and_the_run_resumes_exactly(tmp_path, corpus):
    straight = _torchrun([str(corpus), *MODEL, "--max-steps", "400", "--out", "s/model.pt"], tmp_path)
    _, err = straight.communicate(timeout=180)
    assert straight.returncode == 0, err.decode()

    stopped = _torchrun([str(corpus), *MODEL, "--max-steps", "400", "--log-interval", "1",
                         "--out", "r/model.pt"], tmp_path, start_new_session=True)
    metrics = tmp_path / "r" / "model.metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or metrics.read_text().count("\n") < 20):
        time.sleep(0.2)
    os.killpg(stopped.pid, signal.SIGTERM)  # as a scheduler would: the launcher and its workers
    _, err = stopped.communicate(timeout=120)
    assert stopped.returncode != 0
    assert err.decode().count("stopped by SIGTERM") == 1  # rank 0 speaks, rank 1 stays quiet
    state = load_checkpoint(tmp_path / "r" / "model.last.pt").training_state
    assert 0 < state["progress"]["step"] < 400

    resumed = _torchrun([str(corpus), *MODEL, "--max-steps", "400", "--resume", "auto", "--out", "r/model.pt"], tmp_path)
    _, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err.decode()
    a, b = _weights(tmp_path / "s" / "model.last.pt"), _weights(tmp_path / "r" / "model.last.pt")
    assert all(torch.equal(a[name], b[name]) for name in a)
