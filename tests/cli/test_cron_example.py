"""examples/cron/retrain.sh, run as cron would run it, three nights of a growing corpus.

Night 1 has no production model yet; nights 2 and 3 find more text and start from the
production model. Every night exits 0, says what it did, and leaves no lock. (What
``--resume auto --init-from`` does with a run cut short, or finished, on the same text is
tested on its own below.)
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from rnnlm_cli.store.checkpoint import load_checkpoint
from rnnlm_cli.train.job import resolve_train
from rnnlm_cli.train.resume import why_not_resumed

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "cron" / "retrain.sh"
WORDS = "the a cat dog sat ran on under mat log red big".split()
SMALL = ["--emb", "8", "--hidden", "16", "--layers", "1", "--batch-size", "4", "--bptt", "10",
         "--max-steps", "6", "--max-time", "0", "--device", "cpu"]


def lines(count: int, seed: int) -> str:
    import random

    rng = random.Random(seed)
    return "".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))) + "\n" for _ in range(count))


def night(folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RNNLM": f"{sys.executable} -m rnnlm_cli"}
    env.pop("RNNLM_DEBUG", None)
    return subprocess.run(["sh", str(SCRIPT), str(folder), *SMALL], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_three_nights_of_a_growing_corpus(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "dev.txt").write_text(lines(60, seed=0))
    current = tmp_path / "models" / "current.pt"
    said = []
    for number, new_lines in enumerate((400, 200, 200), start=1):
        with open(corpus / "all.txt", "a") as handle:
            handle.write(lines(new_lines, seed=number))
        done = night(tmp_path)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        assert current.exists(), output
        said.append(output)
        assert not [name for name in os.listdir(tmp_path / "runs" / "nightly") if name.endswith(".lock")]
        assert not [name for name in os.listdir(tmp_path / "models") if name.startswith(".")]

    first, second, third = said
    assert "did not exist" in first and "--init-from" not in first  # the first model becomes current.pt
    for later in (second, third):
        assert "starting from models/current.pt: runs/nightly/model.last.pt holds a run on other data" in later
        assert "done: models/current.pt is the new model" in later or "done: kept models/current.pt" in later
    # Every model since the first speaks the first night's vocabulary: each night started from current.pt.
    assert load_checkpoint(current).tokenizer == load_checkpoint(tmp_path / "runs" / "nightly" / "model.pt").tokenizer


def saved_run(fingerprint: str, step: int, epoch: int = 1):
    return SimpleNamespace(train_config={"provenance": {"data_fingerprint": fingerprint}},
                           training_state={"progress": {"step": step, "epoch": epoch}})


def test_resume_auto_with_init_from_resumes_only_an_unfinished_run_on_the_same_data():
    job = resolve_train("all.txt", {"resume": "auto", "init_from": "current.pt", "max_steps": 6})
    same = lambda: "abc"  # noqa: E731
    assert why_not_resumed(job, saved_run("abc", step=3), same) is None  # cut short: resumed
    assert why_not_resumed(job, saved_run("old", step=3), same) == "holds a run on other data"
    assert why_not_resumed(job, saved_run("abc", step=6), same) == "holds a finished run (step 6 of --max-steps 6)"
    by_epochs = resolve_train("all.txt", {"resume": "auto", "init_from": "current.pt", "epochs": 2})
    assert why_not_resumed(by_epochs, saved_run("abc", step=9, epoch=3), same) == "holds a finished run (2 epochs done)"
    # Without --init-from, or with a named state, what is given is resumed (and checked as ever).
    alone = resolve_train("all.txt", {"resume": "auto"})
    assert why_not_resumed(alone, saved_run("old", step=3), same) is None
