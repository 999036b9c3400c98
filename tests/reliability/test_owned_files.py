"""Files we create are ours: temp files carry their writer's pid and are
removed only once it is gone; a link planted at an output path is never written through."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from rnnlm_cli.cli import app

TRAIN = ["--hidden", "8", "--emb", "8", "--layers", "1", "--max-steps", "4", "--batch-size", "2", "--bptt", "5",
         "--log-interval", "2"]
VICTIM_TEXT = b"root:x:0:0:root:/root:/bin/bash\n"


def dead_pid() -> int:
    """The pid of a process that has just exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "elsewhere" / "passwd"
    path.parent.mkdir()
    path.write_bytes(VICTIM_TEXT)
    return path


def train(tiny_corpus, out, *extra):
    valid = tiny_corpus.parent / "valid.txt"
    valid.write_bytes(tiny_corpus.read_bytes())
    return CliRunner().invoke(app, ["train", str(tiny_corpus), "--valid", str(valid), "--out", str(out), *TRAIN,
                                    *extra])


def test_temp_files_are_named_for_their_writer(tmp_path):
    from rnnlm_cli.files.atomic import atomic_open, atomic_path

    with atomic_path(tmp_path / "a.bin") as temp:
        name = os.path.basename(temp)
    with atomic_open(tmp_path / "b.txt") as handle:
        handle.write("x")
        inner = [n for n in os.listdir(tmp_path) if n.startswith(".rnnlm-tmp-")]
    assert name.startswith(f".rnnlm-tmp-{os.getpid()}")
    assert len(inner) == 1 and inner[0].startswith(f".rnnlm-tmp-{os.getpid()}")
    assert (tmp_path / "b.txt").read_text() == "x"


def test_train_keeps_a_live_writers_temp_file_and_removes_a_dead_ones(tmp_path, tiny_corpus):
    folder = tmp_path / "run"
    folder.mkdir()
    # The test itself is the live writer, as a concurrent `rnnlm tokenize` would be.
    live = folder / f".rnnlm-tmp-{os.getpid()}-k3ep1ng.ids"
    live.write_bytes(b"a concurrent writer's ids")
    dead = folder / f".rnnlm-tmp-{dead_pid()}-g0ne0001"
    dead.write_bytes(b"left by a killed save")
    result = train(tiny_corpus, folder / "model.pt")
    assert result.exit_code == 0, result.stderr
    assert live.read_bytes() == b"a concurrent writer's ids"
    assert not dead.exists()
    assert (folder / "model.pt").is_file()


def test_clean_stale_temps_keeps_what_it_cannot_trace_until_it_is_old(tmp_path):
    from rnnlm_cli.train.run_control import ORPHAN_SECONDS, clean_stale_temps

    fresh_old_style = tmp_path / ".rnnlm-tmp-abc123xy"
    aged_old_style = tmp_path / ".rnnlm-tmp-zz9yy8xx"
    other_host = tmp_path / f".rnnlm-tmp-{dead_pid()}@another.host-q1w2e3r4"
    dead_here = tmp_path / f".rnnlm-tmp-{dead_pid()}-a1b2c3d4.txt"
    not_ours = tmp_path / "model.pt"
    for path in (fresh_old_style, aged_old_style, other_host, dead_here, not_ours):
        path.write_bytes(b"x")
    long_ago = time.time() - ORPHAN_SECONDS - 60
    os.utime(aged_old_style, (long_ago, long_ago))
    assert clean_stale_temps(str(tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [fresh_old_style.name, other_host.name, not_ours.name])


def test_a_metrics_link_is_replaced_not_written_through(tmp_path, tiny_corpus, victim):
    out = tmp_path / "model.pt"
    metrics = tmp_path / "model.metrics.jsonl"
    metrics.symlink_to(victim)
    result = train(tiny_corpus, out)
    assert result.exit_code == 0, result.stderr
    assert victim.read_bytes() == VICTIM_TEXT
    assert not metrics.is_symlink() and b'"event": "valid"' in metrics.read_bytes()


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_resumed_metrics_log_never_appends_through_a_link(tmp_path, victim, kind):
    from rnnlm_cli.train.outputs import MetricsLog

    path = tmp_path / "model.metrics.jsonl"
    if kind == "symlink":
        path.symlink_to(victim)
    else:
        os.link(victim, path)
    log = MetricsLog(str(path), append=True)
    log.write({"event": "train", "step": 1})
    log.close()
    assert victim.read_bytes() == VICTIM_TEXT
    assert not path.is_symlink() and path.read_bytes() == b'{"event": "train", "step": 1}\n'


def test_a_resumed_metrics_log_appends_to_its_own_file(tmp_path):
    from rnnlm_cli.train.outputs import MetricsLog

    path = tmp_path / "model.metrics.jsonl"
    path.write_bytes(b'{"event": "train", "step": 1}\n')
    log = MetricsLog(str(path), append=True)
    log.write({"event": "train", "step": 2})
    log.close()
    assert path.read_bytes() == b'{"event": "train", "step": 1}\n{"event": "train", "step": 2}\n'


def test_a_fifo_at_the_metrics_path_does_not_hang_the_run(tmp_path):
    path = tmp_path / "model.metrics.jsonl"
    os.mkfifo(path)
    code = ("import sys; from rnnlm_cli.train.outputs import MetricsLog; "
            "log = MetricsLog(sys.argv[1], append=True); log.write({'event': 'train'}); log.close()")
    # Opening a FIFO for writing waits for a reader that never comes: a subprocess, so a
    # hang fails this test instead of the suite.
    try:
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("MetricsLog blocked on a FIFO")
    assert done.returncode == 0, done.stderr
    assert path.is_file() and path.read_bytes() == b'{"event": "train"}\n'


@pytest.mark.parametrize("output", ["token file", "plot"])
def test_whole_file_outputs_replace_a_planted_link(tmp_path, tiny_corpus, victim, output):
    if output == "token file":
        target = tmp_path / "corpus.tok"
        target.symlink_to(victim)
        result = CliRunner().invoke(app, ["tokenize", str(tiny_corpus), "--out", str(target)])
        assert result.exit_code == 0, result.stderr
    else:
        pytest.importorskip("matplotlib")
        from rnnlm_cli.train.plot import plot_metrics

        metrics = tmp_path / "m.metrics.jsonl"
        metrics.write_text('{"event": "train", "step": 1, "ppl": 9.0, "lr": 0.1}\n')
        target = tmp_path / "m.curve.png"
        target.symlink_to(victim)
        plot_metrics(metrics, target)
    assert victim.read_bytes() == VICTIM_TEXT
    assert not target.is_symlink() and target.stat().st_size > 0


def test_a_temp_file_swapped_for_a_link_is_never_published(tmp_path, victim):
    from rnnlm_cli.files.atomic import atomic_path
    from rnnlm_cli.errors import OutputError

    dest = tmp_path / "model.pt"
    dest.write_bytes(b"previous")
    with pytest.raises(OutputError, match="replaced by another process"):
        with atomic_path(dest) as temp:
            os.remove(temp)
            os.symlink(victim, temp)
    assert dest.read_bytes() == b"previous" and victim.read_bytes() == VICTIM_TEXT
