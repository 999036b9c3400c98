"""Advisory locks on files we own: one run per output (the ``--out`` stem), one promoter per target.

A lock is an ``flock`` on a lock file: the kernel drops it when the holder dies however
it dies, so a killed run never leaves anything locked. The lock file holds the holder's
pid while held and is removed on release (while still locked: a process waiting on the old
file finds it no longer named and opens the new one); a file still there, naming a pid that
is gone, was left by a run that died, which the next holder reports in one line.

The lock file is opened with ``O_NOFOLLOW`` and must be a regular file: a symlink or FIFO
planted at its name is refused, never followed or truncated.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from typing import Callable, Iterator

from rnnlm_cli.files.atomic import pid_alive
from rnnlm_cli.errors import LockedError, OutputError

LOCK_NAME = ".rnnlm.lock"
_POLL_SECONDS = 0.05


@contextlib.contextmanager
def hold_lock(lock_path: str, what: str, wait_seconds: float = 0.0,
              note: Callable[[str], None] | None = None,
              should_stop: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Hold the lock at ``lock_path`` for the duration.

    ``what`` names the locked thing in messages. With ``wait_seconds`` 0 a held lock fails
    at once with :class:`LockedError` (exit 75); otherwise it is awaited that long first,
    or until ``should_stop`` says so (a signal), which also ends in LockedError.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        fd = _open_lock_file(lock_path, what)
        try:
            if _try_lock(fd):
                if _still_named(fd, lock_path):
                    break
                # Removed or replaced while we waited: that file protects nothing any more.
                os.close(fd)
                continue
            if time.monotonic() >= deadline or should_stop():
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise LockedError(f"{what}: another rnnlm run (pid {holder}) holds it; try again later")
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        os.close(fd)
        time.sleep(_POLL_SECONDS)
    try:
        stale = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if stale.isdigit() and int(stale) != os.getpid() and not pid_alive(int(stale)) and note is not None:
            note(f"{what}: recovered the lock left by pid {stale}, which ended without releasing it")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # released cleanly: nothing stale for the next holder to report
            if _still_named(fd, lock_path):
                os.unlink(lock_path)
        os.close(fd)  # closing releases the flock


def check_lock_usable(lock_path: str, what: str) -> None:
    """OutputError now for a lock that :func:`hold_lock` could never take (a link, a folder
    or a hard link at its name, or a folder where it cannot be created), for a lock taken
    only at the end of a long job. A lock another process holds now is not an error: it may
    be free by then."""
    if os.path.lexists(lock_path):
        os.close(_open_lock_file(lock_path, what))
        return
    folder = os.path.dirname(lock_path) or "."
    if os.path.isdir(folder) and not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{lock_path}: cannot create the lock of {what} (Permission denied)")


def _open_lock_file(lock_path: str, what: str) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(lock_path, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputError(f"{lock_path}: the lock file of {what} is a symbolic link; "
                              "refusing to follow it (remove it)") from exc
        raise OutputError(f"{lock_path}: cannot create the lock of {what} ({exc.strerror})") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise OutputError(f"{lock_path}: the lock file of {what} is not a regular file (remove it)")
    if info.st_nlink > 1:
        # A hard link planted at the name: writing our pid would write into another file.
        os.close(fd)
        raise OutputError(f"{lock_path}: the lock file of {what} has other names (a hard link); remove it")
    return fd


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _still_named(fd: int, lock_path: str) -> bool:
    try:
        named = os.stat(lock_path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def run_lock_path(out: str) -> str:
    """The lock file of the run writing ``out``: ``.<stem>.rnnlm.lock`` beside it, so runs
    with other ``--out`` stems train side by side in one folder."""
    folder, name = os.path.split(os.path.abspath(out))
    return os.path.join(folder, f".{os.path.splitext(name)[0]}{LOCK_NAME}")


def output_lock(out: str, note: Callable[[str], None] | None = None):
    """The lock of the run writing ``out`` and the files beside it named for its stem: a
    second run for the same stem fails at once with exit 75."""
    folder = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror})") from exc
    return hold_lock(run_lock_path(out), f"the output {out}", note=note)


def target_lock_path(target: str) -> str:
    """The lock file of a promotion target (resolved): ``.<name>.rnnlm.lock`` beside it."""
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name}{LOCK_NAME}")
