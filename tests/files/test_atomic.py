"""Atomic whole-file writes, owned temp files and whole-line appends, checked on the file system."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from rnnlm_cli.errors import OutputError
from rnnlm_cli.files import atomic
from rnnlm_cli.files.atomic import (TEMP_PREFIX, append_line, atomic_open, atomic_path, is_this_host, make_temp,
                                    open_append, owner_of_temp, pid_alive, temp_prefix, write_failure)


def temps(folder) -> list[str]:
    return [name for name in os.listdir(folder) if name.startswith(TEMP_PREFIX)]


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


# ---------------------------------------------------------------- whole-file writes


def test_the_target_holds_the_old_file_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    with atomic_open(target) as handle:
        handle.write("new ")
        handle.flush()
        # Half written: a reader of the target still sees the whole old file.
        assert target.read_text() == "old\n"
        assert len(temps(tmp_path)) == 1
        handle.write("content\n")
    assert target.read_text() == "new content\n"
    assert temps(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_a_new_file_appears_only_at_the_end(tmp_path):
    target = tmp_path / "fresh.bin"
    with atomic_open(target, "wb") as handle:
        handle.write(b"\x00\xffabc")
        assert not target.exists()
    assert target.read_bytes() == b"\x00\xffabc"


def test_an_exception_mid_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    with pytest.raises(ValueError, match="boom"):
        with atomic_open(target) as handle:
            handle.write("partial")
            raise ValueError("boom")
    assert target.read_text() == "old\n"
    assert temps(tmp_path) == []


def test_a_full_disk_mid_write_is_an_output_error_with_the_old_file_intact(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    with pytest.raises(OutputError) as caught:
        with atomic_open(target) as handle:
            handle.write("partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert caught.value.exit_code == 73
    assert "No space left on device" in str(caught.value) and "unchanged" in str(caught.value)
    assert target.read_text() == "old\n"
    assert temps(tmp_path) == []


def test_a_new_file_gets_the_mode_a_plain_open_would_give(tmp_path, umask_022):
    target = tmp_path / "out.txt"
    with atomic_open(target) as handle:
        handle.write("x")
    # mkstemp makes 0600; the published file is 0666 & ~umask, as open() would make it.
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert stat.S_IMODE(plain.stat().st_mode) == stat.S_IMODE(target.stat().st_mode)


def test_the_file_and_its_folder_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        info = os.fstat(fd)
        synced.append((stat.S_ISDIR(info.st_mode), info.st_ino, target.read_text()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with atomic_open(target) as handle:
        handle.write("new\n")
    assert len(synced) == 2
    (file_is_dir, file_inode, seen_then), (folder_is_dir, folder_inode, seen_after) = synced
    # First the new file's data, while the target still holds the old file; then the folder entry.
    assert not file_is_dir and file_inode == target.stat().st_ino and seen_then == "old\n"
    assert folder_is_dir and folder_inode == tmp_path.stat().st_ino and seen_after == "new\n"


def test_a_link_at_the_target_is_replaced_and_its_referent_left_alone(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    target = tmp_path / "out.txt"
    target.symlink_to(victim)
    with atomic_open(target) as handle:
        handle.write("ours\n")
    assert not target.is_symlink()
    assert target.read_text() == "ours\n"
    assert victim.read_text() == "precious\n"


def test_atomic_path_publishes_what_was_written_by_name(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with atomic_path(target) as temp:
        assert os.path.dirname(temp) == str(tmp_path)
        assert os.path.basename(temp).startswith(temp_prefix())
        # Writers such as safetensors' create a new file at the name.
        os.remove(temp)
        with open(temp, "wb") as handle:
            handle.write(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"
    assert temps(tmp_path) == []


def test_atomic_path_refuses_a_temp_name_swapped_for_a_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("theirs\n")
    target = tmp_path / "out.bin"
    with pytest.raises(OutputError, match="replaced by another process"):
        with atomic_path(target) as temp:
            os.remove(temp)
            os.symlink(victim, temp)
    assert not target.exists() and not os.path.lexists(target)
    assert victim.read_text() == "theirs\n"
    assert temps(tmp_path) == []


def test_atomic_open_refuses_a_temp_name_swapped_behind_its_descriptor(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    with pytest.raises(OutputError, match="replaced by another process"):
        with atomic_open(target) as handle:
            handle.write("ours")
            (temp,) = temps(tmp_path)
            os.remove(tmp_path / temp)
            (tmp_path / temp).write_text("planted")
    assert target.read_text() == "old\n"


# ---------------------------------------------------------------- temp file names and owners


def test_make_temp_creates_a_private_empty_file_named_for_this_process(tmp_path):
    fd, path = make_temp(str(tmp_path / "new" / "folder"), suffix=".pt")
    try:
        info = os.fstat(fd)
        assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_size == 0
        name = os.path.basename(path)
        assert name.startswith(f"{TEMP_PREFIX}{os.getpid()}@") and name.endswith(".pt")
        assert owner_of_temp(name)[0] == os.getpid()
    finally:
        os.close(fd)


def test_make_temp_in_a_folder_that_cannot_exist_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot write") as caught:
        make_temp(str(blocker / "sub"), for_path="model.pt")
    assert str(caught.value).startswith("model.pt:")


@pytest.mark.parametrize("name, owner", [
    (".rnnlm-tmp-123@host.example-abc_12x", (123, "host.example")),
    (".rnnlm-tmp-123@my-box-abc_12x.pt", (123, "my-box")),  # the host is all up to the last "-"
    (".rnnlm-tmp-77-anything", (77, None)),
    (".rnnlm-tmp-abc_12x", None),  # old style: no pid
    ("model.pt", None),
    (".rnnlm-tmp-", None),
])
def test_owner_of_temp_reads_pid_and_host_from_the_name(name, owner):
    assert owner_of_temp(name) == owner


def test_this_process_temp_names_parse_back_to_this_process_and_host():
    pid, host = owner_of_temp(temp_prefix() + "k3j_x9q1.tmp")
    assert pid == os.getpid()
    assert is_this_host(host) and is_this_host(None)
    assert not is_this_host(host + "-elsewhere")


def test_pid_alive():
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-5)
    assert not pid_alive(2**31 - 1)  # above any pid_max Linux allows
    assert not pid_alive(2**80)  # does not fit a pid_t


# ---------------------------------------------------------------- why a write failed


def test_write_failure_names_what_the_destination_could_not_take():
    assert write_failure(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
    assert write_failure(OSError(errno.EDQUOT, "")) == os.strerror(errno.EDQUOT)
    assert write_failure(OSError(errno.ENOENT, "No such file")) is None  # an input's problem
    assert write_failure(ValueError("bad data")) is None


def test_write_failure_follows_torch_writer_errors_to_their_cause():
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system")
        except OSError as cause:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 64") from cause
    except RuntimeError as exc:
        assert write_failure(exc) == "Read-only file system"
    assert "disk full" in write_failure(RuntimeError("PytorchStreamWriter failed writing file data/0"))
    assert write_failure(RuntimeError("shape mismatch")) is None


# ---------------------------------------------------------------- appends


def test_open_append_appends_to_its_own_plain_file(tmp_path):
    path = tmp_path / "m.metrics.jsonl"
    path.write_bytes(b"one\n")
    fd = open_append(str(path), fresh=False)
    try:
        append_line(fd, str(path), b"two\n")
    finally:
        os.close(fd)
    assert path.read_bytes() == b"one\ntwo\n"


def test_open_append_fresh_starts_an_empty_file(tmp_path):
    path = tmp_path / "m.metrics.jsonl"
    path.write_bytes(b"old run\n")
    fd = open_append(str(path), fresh=True)
    try:
        append_line(fd, str(path), b"new\n")
    finally:
        os.close(fd)
    assert path.read_bytes() == b"new\n"
    assert temps(tmp_path) == []


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo"])
def test_open_append_never_writes_through_another_name(tmp_path, kind):
    victim = tmp_path / "victim"
    path = tmp_path / "m.metrics.jsonl"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        victim.write_bytes(b"precious\n")
        (path.symlink_to if kind == "symlink" else path.hardlink_to)(victim)
    fd = open_append(str(path), fresh=False)
    try:
        append_line(fd, str(path), b"ours\n")
    finally:
        os.close(fd)
    assert stat.S_ISREG(os.lstat(path).st_mode) and os.lstat(path).st_nlink == 1
    assert path.read_bytes() == b"ours\n"
    if kind != "fifo":
        assert victim.read_bytes() == b"precious\n"


def test_open_append_refuses_a_directory(tmp_path):
    (tmp_path / "m.metrics.jsonl").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        open_append(str(tmp_path / "m.metrics.jsonl"), fresh=False)


def test_a_failed_append_is_cut_back_to_the_previous_end(tmp_path, monkeypatch):
    path = tmp_path / "log"
    path.write_bytes(b"kept\n")
    fd = open_append(str(path), fresh=False)
    real_write = os.write
    calls = []

    def half_then_full(fd_, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd_, bytes(data[:3]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "write", half_then_full)
    try:
        with pytest.raises(OutputError, match="intact") as caught:
            append_line(fd, str(path), b"0123456789\n")
    finally:
        monkeypatch.undo()
        os.close(fd)
    assert calls == [11, 8]  # the rest of the line was tried after a short write
    assert caught.value.exit_code == 73
    assert path.read_bytes() == b"kept\n"
