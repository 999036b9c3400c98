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


def night(folder: Path, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RNNLM": f"{sys.executable} -m rnnlm_cli"}
    env.pop("RNNLM_DEBUG", None)
    return subprocess.run(["sh", str(SCRIPT), str(folder), *SMALL, *options], capture_output=True, text=True,
                          env=env, timeout=300)


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


def drifting_lines(count: int, seed: int, new_words: list[str]) -> str:
    """Lines of the base words, a third of them drawn from ``new_words`` when there are any."""
    import random

    rng = random.Random(seed)

    def word() -> str:
        return rng.choice(new_words) if new_words and rng.random() < 1 / 3 else rng.choice(WORDS)

    return "".join(" ".join(word() for _ in range(rng.randint(4, 9))) + "\n" for _ in range(count))


def outside_share(text: str, pieces: list[str]) -> float:
    """The share of ``text``'s words that are not in ``pieces``, counted by hand."""
    words = text.split()
    known = set(pieces)
    return sum(word not in known for word in words) / len(words)


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_four_nights_of_a_drifting_vocabulary(tmp_path):
    """New words arrive on nights 2 and 4. A night learns the corpus's vocabulary when the share
    of its words outside current.pt's, counted here by hand, reaches --grow-vocab 0.01, and
    keeps current.pt's otherwise; promotion across vocabularies compares the words both know,
    and once a grown model is promoted the next night's text is inside its vocabulary."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    current, run_model = tmp_path / "models" / "current.pt", tmp_path / "runs" / "nightly" / "model.pt"
    arrivals = {1: [], 2: [f"novel{i}" for i in range(8)], 3: [], 4: [f"fresh{i}" for i in range(8)]}
    grown_nights, promoted_across = [], 0
    for number, new_words in arrivals.items():
        with open(corpus / "all.txt", "a") as handle:
            handle.write(drifting_lines(400 if number == 1 else 150, seed=number, new_words=new_words))
        with open(corpus / "dev.txt", "a") as handle:  # the validation text follows the language too
            handle.write(drifting_lines(30, seed=100 + number, new_words=new_words))
        before = load_checkpoint(current).tokenizer["pieces"] if current.exists() else None
        done = night(tmp_path, "--max-steps", "60")
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        text = (corpus / "all.txt").read_text()
        if before is None:
            assert "vocabulary grown" not in output and "vocabulary kept" not in output
            continue
        share = outside_share(text, before)
        assert f"{100 * share:.2f}% of the corpus's words are outside the vocabulary of models/current.pt" in output
        pieces = load_checkpoint(run_model).tokenizer["pieces"]
        if share >= 0.01:
            grown_nights.append(number)
            assert "vocabulary grown" in output, output
            # The corpus's own vocabulary: every word it holds (--min-count 1), nothing else.
            assert set(pieces[2:]) == set(text.split())
            assert "keep their rows from models/current.pt" in output
        else:
            assert "vocabulary kept" in output and pieces == before, output
        if "done: models/current.pt is the new model" in output and pieces != before:
            assert "over the events both vocabularies name" in output
            promoted_across += 1
    assert 2 in grown_nights and 4 in grown_nights
    assert promoted_across >= 1
    if 3 not in grown_nights:  # night 2's model was promoted: night 3 brought no new word
        assert set(load_checkpoint(current).tokenizer["pieces"]) >= {f"novel{i}" for i in range(8)}
