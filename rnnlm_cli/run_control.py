"""Running safely beside others: an output-folder lock, stale temp files, stop signals.

* The lock is an advisory ``flock`` on ``<folder>/.rnnlm.lock``: the kernel drops it when
  the process dies however it dies, so a killed run never leaves the folder locked.
* Temporary files (``.rnnlm-tmp-*``) left by a run killed mid-save are removed once the
  lock is held, since no other run can be writing them then.
* SIGINT/SIGTERM ask the training loop to stop after the current step and save; a
  second signal (a second or more later) aborts at once (the saves are atomic, so
  nothing is left half-written).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from typing import Iterator

from rnnlm_cli.atomic import TEMP_PREFIX
from rnnlm_cli.errors import LockedError, OutputError

LOCK_NAME = ".rnnlm.lock"


@contextlib.contextmanager
def output_lock(folder: str) -> Iterator[None]:
    """Hold the folder's lock for the duration, or fail at once with :class:`LockedError`."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(os.path.join(folder, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder's lock ({exc.strerror})") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise LockedError(f"{folder}: another rnnlm run (pid {holder}) is writing here; try again later") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def clean_stale_temps(folder: str) -> int:
    """Remove temporary files of interrupted saves in ``folder``; call only under the lock."""
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(folder):
            if name.startswith(TEMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(folder, name))
                    removed += 1
    return removed


class StopSignals:
    """Turns the first SIGINT/SIGTERM into a request to stop; the second aborts.

    Use as a context manager around the training loop and poll :attr:`requested`
    between steps. Outside the main thread (where handlers cannot be set) it is inert.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    ECHO_SECONDS = 1.0
    """A repeat within this time is the same request arriving twice (a scheduler signalling
    the whole process group, torchrun forwarding it), not a second request."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._first_at = 0.0
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.requested is not None:
            if time.monotonic() - self._first_at < self.ECHO_SECONDS:
                return
            self._restore()
            raise KeyboardInterrupt  # second signal: abort now
        self.requested = signum
        self._first_at = time.monotonic()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self) -> "StopSignals":
        with contextlib.suppress(ValueError):  # not the main thread
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()
