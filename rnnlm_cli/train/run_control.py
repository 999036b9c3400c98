"""Running safely beside others: stale temp files and stop signals (the locks: :mod:`rnnlm_cli.files.locks`).

* Temporary files (``.rnnlm-tmp-<pid>@<host>-*``) left by a run killed mid-save are
  removed once their writer is gone; a live writer's (a ``tokenize`` beside the run) stay.
* SIGINT/SIGTERM/SIGHUP ask the training loop to stop after the current step and save; a
  second signal (a second or more later) aborts at once (the saves are atomic, so
  nothing is left half-written).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time

from rnnlm_cli.files.atomic import TEMP_PREFIX, is_this_host, owner_of_temp, pid_alive


def clean_stale_temps(folder: str) -> int:
    """Remove the temporary files in ``folder`` whose writer is gone; the count removed.

    A file named for a pid of this host is removed only once that process is gone: a
    concurrent ``tokenize`` or ``export`` writing in the folder keeps its files. A file of
    another host (a folder shared over the network) or of the older pid-less naming cannot
    be traced to a process, so it is taken as abandoned only when untouched for
    ``ORPHAN_SECONDS``: every writer rewrites its file far more often than that, save the
    sentencepiece spool of stdin, which is read for hours at most.
    """
    removed = 0
    now = time.time()
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for name in os.listdir(folder):
            if not name.startswith(TEMP_PREFIX):
                continue
            path = os.path.join(folder, name)
            with contextlib.suppress(FileNotFoundError):
                info = os.lstat(path)
                if stat.S_ISDIR(info.st_mode) or not _abandoned(name, now - info.st_mtime):
                    continue
                os.remove(path)
                removed += 1
    return removed


ORPHAN_SECONDS = 24 * 3600
_LARGEST_PID = 2**31 - 1  # a C int: the kernel's pids never reach it


def _abandoned(name: str, age: float) -> bool:
    owner = owner_of_temp(name)
    if owner is None or not is_this_host(owner[1]):
        return age > ORPHAN_SECONDS
    pid = owner[0]
    if pid == os.getpid():
        return False
    if pid > _LARGEST_PID:
        return age > ORPHAN_SECONDS  # no such pid can exist: a name we did not write
    return not pid_alive(pid)


class StopSignals:
    """Turns the first SIGINT/SIGTERM/SIGHUP into a request to stop; the second aborts.

    Use as a context manager around the training loop and poll :attr:`requested`
    between steps. Outside the main thread (where handlers cannot be set) it is inert.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: the terminal or ssh session went away
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
                if signum == signal.SIGHUP and signal.getsignal(signum) is signal.SIG_IGN:
                    continue  # `nohup rnnlm train ...`: a closed session must not stop the run
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()
