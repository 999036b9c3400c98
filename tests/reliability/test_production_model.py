"""The production model is sacred: names that collide, outputs that cannot be written,
promotion as a transaction, resuming with other validation text, and signals after training.

Each refusal is checked the way an operator would see it: the exit code, one stderr line,
and every file that was there before still byte for byte the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.errors import LockedError
from rnnlm_cli.train.promote import promote_if_better
from rnnlm_cli.text.tokenfile import open_token_file

from test_training_survives import (BATCHING, SHAPE, beside, cli, error_line, flags, records, subprocess_env,
                                    train, write_corpus)

COMMON = flags(SHAPE, BATCHING)


@contextlib.contextmanager
def target_locked(target: Path):
    """Hold a promotion target's lock as another promoter would: flock on ``.<name>.rnnlm.lock``."""
    fd = os.open(target.parent / f".{target.name}.rnnlm.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: digest(p) for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Three models of one tokenizer and shape, of known order: weak > medium > strong in valid ppl."""
    root = tmp_path_factory.mktemp("models")
    corpus = write_corpus(root / "corpus.txt", 200)
    valid = write_corpus(root / "valid.txt", 60, start=400)
    out = {}
    for name, steps in (("weak", 1), ("medium", 25), ("strong", 150)):
        path = root / name / "m.pt"
        train(corpus, path, *COMMON, "--valid", valid, "--max-steps", steps, "--lr", 0.01)
        out[name] = path
    out["corpus"], out["valid"] = corpus, valid
    out["valid_tokens"] = open_token_file(beside(out["strong"], ".valid.tok")).tokens
    return out


# ---------------------------------------------------------------- 1. two roles, one file


def spellings(path: Path, kind: str) -> Path:
    """Another name for ``path``: a symlink, a hard link, or a path through '..'."""
    if kind == "symlink":
        other = path.with_name("alias-" + path.name)
        other.symlink_to(path)
        return other
    if kind == "hardlink":
        other = path.with_name("hard-" + path.name)
        os.link(path, other)
        return other
    return path.parent / ".." / path.parent.name / path.name


@pytest.mark.parametrize("kind", ["same", "symlink", "hardlink", "dotdot"])
def test_out_and_promote_target_naming_one_file_are_refused_before_a_byte_is_written(tmp_path, models, kind):
    prod = tmp_path / "prod"
    prod.mkdir()
    target = prod / "current.pt"
    shutil.copyfile(models["weak"], target)
    out = target if kind == "same" else spellings(target, kind)
    before = folder_digest(prod)
    result = cli("train", models["corpus"], "--out", out, *COMMON, "--max-steps", 2,
                 "--promote-if-better", target)
    assert result.exit_code == 2, result.stderr
    assert "same file" in error_line(result.stderr)
    assert folder_digest(prod) == before  # no token file, no state, no metrics, target whole


@pytest.mark.parametrize("kind", ["folder", "symlink"])
def test_a_promotion_lock_that_can_never_be_taken_is_refused_before_training(tmp_path, models, kind):
    # The target's lock is taken only after training: a name it can never take is said at once.
    prod = tmp_path / "prod"
    prod.mkdir()
    target = prod / "current.pt"
    shutil.copyfile(models["weak"], target)
    lock = prod / ".current.pt.rnnlm.lock"
    if kind == "folder":
        lock.mkdir()
    else:
        lock.symlink_to(tmp_path / "elsewhere")
    out = tmp_path / "run" / "model.pt"
    result = cli("train", models["corpus"], "--out", out, *COMMON, "--max-steps", 2, "--promote-if-better", target)
    assert result.exit_code == 73, result.stderr
    assert "lock" in error_line(result.stderr) and not out.exists()


@pytest.mark.parametrize("pair", ["out=corpus", "out=valid", "corpus=valid", "out=init-from", "out=resume",
                                  "token-file=corpus", "metrics=valid", "promote=corpus", "resume=init-from"])
def test_any_two_train_roles_naming_one_file_are_refused(tmp_path, models, pair):
    run = tmp_path / "run"
    run.mkdir()
    corpus, valid = run / "corpus.txt", run / "valid.txt"
    shutil.copyfile(models["corpus"], corpus)
    shutil.copyfile(models["valid"], valid)
    model = run / "model.pt"
    shutil.copyfile(models["weak"], model)
    args = {"corpus": corpus, "--out": run / "new.pt", "--valid": valid}
    if pair == "out=corpus":
        args["--out"] = corpus
    elif pair == "out=valid":
        args["--out"] = valid
    elif pair == "corpus=valid":
        args["--valid"] = corpus
    elif pair == "out=init-from":
        args["--out"], args["--init-from"] = model, model
    elif pair == "out=resume":
        args["--out"], args["--resume"] = model, model
    elif pair == "token-file=corpus":
        # The run would encode corpus.txt into <stem>.train.tok: that name is the corpus itself.
        os.replace(corpus, run / "x.train.tok")
        args["corpus"], args["--out"] = run / "x.train.tok", run / "x.pt"
    elif pair == "metrics=valid":
        os.replace(valid, run / "y.metrics.jsonl")
        args["--valid"], args["--out"] = run / "y.metrics.jsonl", run / "y.pt"
    elif pair == "promote=corpus":
        args["--promote-if-better"] = corpus
    elif pair == "resume=init-from":
        args["--resume"], args["--init-from"] = model, model
    before = folder_digest(run)
    corpus_arg = args.pop("corpus")
    result = cli("train", corpus_arg, *COMMON, "--max-steps", 2,
                 *[str(x) for item in args.items() for x in item])
    assert result.exit_code == 2, result.stderr
    assert "same file" in error_line(result.stderr)
    assert folder_digest(run) == before


def test_the_cron_recipe_init_from_and_promote_the_same_model_still_works(tmp_path, models):
    target = tmp_path / "current.pt"
    shutil.copyfile(models["weak"], target)
    result = train(models["corpus"], tmp_path / "run" / "m.pt", *COMMON, "--valid", models["valid"],
                   "--max-steps", 40, "--lr", 0.01, "--init-from", target, "--promote-if-better", target)
    assert "promoted" in result.stderr
    assert digest(target) == digest(tmp_path / "run" / "m.pt")


@pytest.mark.parametrize("option", ["--out", "--save-tokenizer"])
def test_tokenize_refuses_to_write_over_its_input(tmp_path, option):
    corpus = write_corpus(tmp_path / "corpus.txt", 20)
    before = digest(corpus)
    result = cli("tokenize", corpus, option, corpus)
    assert result.exit_code == 2, result.stderr
    assert "same file" in error_line(result.stderr)
    assert digest(corpus) == before


def test_standard_output_appended_to_an_input_is_refused(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", 20)
    before = digest(corpus)
    with open(corpus, "ab") as sink:
        proc = subprocess.run([sys.executable, "-m", "rnnlm_cli", "tokenize", str(corpus), "--print", "ids"],
                              stdout=sink, stderr=subprocess.PIPE, env=subprocess_env(), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert digest(corpus) == before
    assert proc.stderr.decode().count("\n") == 1 and "standard output" in proc.stderr.decode()


# ---------------------------------------------------------------- 7. outputs checked at the start


@pytest.mark.parametrize("kind, code", [("trailing-slash", 2), ("directory", 2), ("empty", 2), ("fifo", 2),
                                        ("device", 2), ("parent-is-a-file", 73), ("state-is-a-directory", 2)])
def test_an_output_that_cannot_be_written_is_refused_before_training(tmp_path, models, kind, code):
    run = tmp_path / "run"
    run.mkdir()
    out = run / "model.pt"
    if kind == "trailing-slash":
        out = str(run) + "/"
    elif kind == "directory":
        (run / "model.pt").mkdir()
    elif kind == "empty":
        out = ""
    elif kind == "fifo":
        os.mkfifo(out)
    elif kind == "device":
        # A device node of our own: were the check missing, the run would rename a file over it.
        try:
            os.mknod(out, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("cannot create a device node here")
    elif kind == "parent-is-a-file":
        (run / "file").write_text("x")
        out = run / "file" / "model.pt"
    elif kind == "state-is-a-directory":
        (run / "model.last.pt").mkdir()
    result = cli("train", models["corpus"], "--out", out, *COMMON, "--max-steps", 2)
    assert result.exit_code == code, result.stderr
    error_line(result.stderr)
    assert "training on" not in result.stderr
    assert not any(p.name.endswith((".tok", ".jsonl")) for p in run.iterdir())


# ---------------------------------------------------------------- 2. promotion is a transaction


def promote(models, candidate: str, target: Path, **kwargs):
    config = TrainConfig(batch_size=4, bptt=10, device="cpu")
    return promote_if_better(str(models[candidate]), str(target), models["valid_tokens"], config,
                             torch.device("cpu"), **kwargs)


def test_promotion_keeps_the_targets_mode(tmp_path, models):
    target = tmp_path / "current.pt"
    shutil.copyfile(models["weak"], target)
    os.chmod(target, 0o640)
    promoted, _ = promote(models, "strong", target)
    assert promoted
    assert digest(target) == digest(models["strong"])
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640


def test_a_symlinked_target_keeps_the_link_and_its_referent_is_replaced(tmp_path, models):
    versions = tmp_path / "versions"
    versions.mkdir()
    referent = versions / "v3.pt"
    shutil.copyfile(models["weak"], referent)
    link = tmp_path / "current.pt"
    link.symlink_to(referent)
    promoted, _ = promote(models, "strong", link)
    assert promoted
    assert link.is_symlink() and os.readlink(link) == str(referent)
    assert digest(referent) == digest(models["strong"])


def test_the_target_is_scored_again_under_its_lock(tmp_path, models):
    """A better model put in place while the promoter waited is not overwritten by a worse one."""
    target = tmp_path / "current.pt"
    shutil.copyfile(models["weak"], target)
    outcome = {}
    with target_locked(target):
        worker = threading.Thread(target=lambda: outcome.update(result=promote(models, "medium", target)))
        worker.start()
        time.sleep(0.5)  # the promoter has scored the new model and is waiting for the lock
        shutil.copyfile(models["strong"], target)
    worker.join(60)
    assert outcome["result"][0] is False, outcome
    assert digest(target) == digest(models["strong"])


@pytest.mark.parametrize("first", ["medium", "strong"])
def test_two_racing_promoters_end_with_the_better_model(tmp_path, models, monkeypatch, first):
    """Both start at once against a weak model; the worse one is slow to copy its file in."""
    import rnnlm_cli.train.promote

    real_copy = shutil.copyfile

    def copy(source, dest, *args, **kwargs):
        if os.fspath(source) == str(models["medium"]):
            time.sleep(1.0)
        return real_copy(source, dest, *args, **kwargs)

    monkeypatch.setattr(rnnlm_cli.train.promote.shutil, "copyfile", copy)
    target = tmp_path / "current.pt"
    shutil.copyfile(models["weak"], target)
    results = {}
    order = [first, "strong" if first == "medium" else "medium"]
    workers = [threading.Thread(target=lambda name=name: results.update({name: promote(models, name, target)}))
               for name in order]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert digest(target) == digest(models["strong"]), results


def test_a_promoter_that_cannot_get_the_lock_leaves_the_target_and_says_so(tmp_path, models):
    target = tmp_path / "current.pt"
    shutil.copyfile(models["weak"], target)
    with target_locked(target):
        with pytest.raises(LockedError) as caught:
            promote(models, "strong", target, wait_seconds=0.2)
    assert caught.value.exit_code == 75
    assert digest(target) == digest(models["weak"])


# ---------------------------------------------------------------- 8. resume with other validation text


def test_resume_with_another_valid_set_rescores_the_best_model_on_it(tmp_path, models):
    from rnnlm_cli.store.checkpoint import load_checkpoint, load_model
    from rnnlm_cli.train.validation import stream_loss

    out = tmp_path / "run" / "m.pt"
    train(models["corpus"], out, *COMMON, "--valid", models["valid"], "--max-steps", 30, "--lr", 0.01)
    same = train(models["corpus"], out, *COMMON, "--valid", models["valid"], "--max-steps", 31, "--lr", 0.01,
                 "--resume", "auto")
    assert "validation text differs" not in same.stderr
    best_so_far = tmp_path / "best-so-far.pt"
    shutil.copyfile(out, best_so_far)
    other = write_corpus(tmp_path / "other.txt", 60, start=800)
    result = train(models["corpus"], out, *COMMON, "--valid", other, "--max-steps", 32, "--lr", 0.01,
                   "--resume", "auto")
    assert len([line for line in result.stderr.splitlines() if "validation text differs" in line]) == 1, result.stderr
    new_valid = open_token_file(beside(out, ".valid.tok")).tokens
    rescored = stream_loss(load_model(best_so_far)[0], new_valid, 10, 10, torch.device("cpu"))
    last = records(beside(out, ".metrics.jsonl"), "valid")[-1]
    assert last["best"] == (last["valid_loss"] < rescored)
    best = load_checkpoint(beside(out, ".last.pt")).training_state["progress"]["best_valid_loss"]
    assert best == pytest.approx(min(rescored, last["valid_loss"]), rel=1e-5)


# ---------------------------------------------------------------- 9. signals after the last step


def start(args: list, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnnlm_cli", *map(str, args)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=subprocess_env(), **kwargs)


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}: {proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def last_step(path: Path) -> int:
    from rnnlm_cli.store.checkpoint import load_checkpoint

    try:
        return load_checkpoint(path).training_state["progress"]["step"]
    except Exception:
        return -1


def test_sigterm_during_the_final_validation_ends_as_a_stop_with_the_state_saved(tmp_path, models):
    big_valid = write_corpus(tmp_path / "big-valid.txt", 6000, start=2000)
    slow = tmp_path / "slow-valid.yaml"
    slow.write_text("eval_batch_size: 1\n")  # one stream: the validation takes seconds
    out = tmp_path / "run" / "m.pt"
    proc = start(["train", models["corpus"], "--out", out, *COMMON, "--valid", big_valid, "--max-steps", 5,
                  "--log-interval", 1, "--config", slow])
    metrics = beside(out, ".metrics.jsonl")
    wait_for(lambda: any(r["step"] == 5 for r in records(metrics, "train")), proc, "the last step")
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(120)
    stderr = proc.stderr.read().decode()
    assert code == 143, stderr
    assert "Traceback" not in stderr
    assert last_step(beside(out, ".last.pt")) == 5


def test_sigterm_while_promoting_leaves_the_target_and_ends_as_a_stop(tmp_path, models):
    target = tmp_path / "current.pt"
    shutil.copyfile(models["weak"], target)
    before = digest(target)
    out = tmp_path / "run" / "m.pt"
    with target_locked(target):
        proc = start(["train", models["corpus"], "--out", out, *COMMON, "--valid", models["valid"],
                      "--max-steps", 30, "--lr", 0.01, "--promote-if-better", target])
        wait_for(lambda: last_step(beside(out, ".last.pt")) == 30, proc, "the state after training")
        time.sleep(1.0)  # scoring the new model, then waiting for the target's lock
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(120)
    stderr = proc.stderr.read().decode()
    assert code == 143, stderr
    assert digest(target) == before
    assert "unchanged" in stderr.strip().splitlines()[-1]


def test_an_input_named_like_a_snapshot_the_run_rotates_away_is_refused(tmp_path, models):
    run = tmp_path / "run"
    run.mkdir()
    snapshot = run / "m.step000000001.pt"
    shutil.copyfile(models["weak"], snapshot)
    before = digest(snapshot)
    result = cli("train", models["corpus"], "--out", run / "m.pt", *COMMON, "--max-steps", 2,
                 "--keep-checkpoints", 1, "--init-from", snapshot)
    assert result.exit_code == 2, result.stderr
    assert "snapshots" in error_line(result.stderr)
    assert digest(snapshot) == before


@pytest.mark.parametrize("command", ["eval", "generate"])
def test_results_appended_to_the_model_they_come_from_are_refused(tmp_path, models, command):
    model = tmp_path / "m.pt"
    shutil.copyfile(models["strong"], model)
    args = [str(models["valid"])] if command == "eval" else ["--max-tokens", "3", "--seed", "1"]
    with open(model, "ab") as sink:
        proc = subprocess.run([sys.executable, "-m", "rnnlm_cli", command, str(model), *args],
                              stdout=sink, stderr=subprocess.PIPE, env=subprocess_env(), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert digest(model) == digest(models["strong"])


def test_export_refuses_to_write_over_its_model(tmp_path, models):
    model = tmp_path / "m.pt"
    shutil.copyfile(models["strong"], model)
    result = cli("export", model, "--format", "embeddings", "--out", model)
    assert result.exit_code == 2, result.stderr
    assert "same file" in error_line(result.stderr)
    assert digest(model) == digest(models["strong"])


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "fifo"])
def test_a_lock_file_planted_by_someone_else_is_never_written_through(tmp_path, models, plant):
    run = tmp_path / "run"
    run.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    lock = run / ".m.rnnlm.lock"
    if plant == "symlink":
        lock.symlink_to(victim)
    elif plant == "hardlink":
        os.link(victim, lock)
    else:
        os.mkfifo(lock)
    result = cli("train", models["corpus"], "--out", run / "m.pt", *COMMON, "--max-steps", 2)
    assert result.exit_code == 73, result.stderr
    assert "lock file" in error_line(result.stderr)
    assert victim.read_text() == "precious\n"
    assert not (run / "m.pt").exists()


def test_a_lock_left_by_a_run_that_died_is_taken_over_with_a_note(tmp_path, models):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / ".m.rnnlm.lock").write_text(f"{dead.pid}\n")
    result = train(models["corpus"], run / "m.pt", *COMMON, "--max-steps", 2)
    notes = [line for line in result.stderr.splitlines() if "recovered the lock" in line]
    assert len(notes) == 1 and str(dead.pid) in notes[0], result.stderr
    assert not (run / ".m.rnnlm.lock").exists()  # released cleanly: nothing for the next run to report


@pytest.fixture
def read_only_folder(tmp_path):
    """A read-only file system of our own (the only folder root cannot write), or a skip."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only file system here")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.parametrize("where", ["--out", "--promote-if-better"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_training(tmp_path, models, read_only_folder,
                                                                            where):
    out = read_only_folder / "runs" / "m.pt" if where == "--out" else tmp_path / "run" / "m.pt"
    extra = ["--promote-if-better", read_only_folder / "current.pt"] if where != "--out" else []
    result = cli("train", models["corpus"], "--out", out, *COMMON, "--max-steps", 2, *extra)
    assert result.exit_code == 73, result.stderr
    assert str(read_only_folder) in error_line(result.stderr)
    assert "training on" not in result.stderr


def test_sighup_stops_training_like_sigterm_but_not_under_nohup():
    from rnnlm_cli.train.run_control import StopSignals

    # The suite itself may run under nohup (SIGHUP ignored, as the second half sets it): each
    # half sets the disposition it is about, and the one the suite found is put back.
    before = signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as a terminal session leaves it
    try:
        with StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)
        assert stop.requested == signal.SIGHUP
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup leaves it
        with StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)
        assert stop.requested is None
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)
