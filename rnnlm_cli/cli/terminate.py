"""SIGTERM (and SIGHUP) as an exception, so that every command cleans up as it unwinds.

Left to their default action these signals end the process at once: temp files stay,
and a cron job sees a bare "killed by signal". Raised as :class:`Terminated` instead,
they unwind through the ``with`` blocks that remove unfinished outputs, and the command
line reports them in one line with exit 128 + signal. The training loop installs its own
handlers (:class:`rnnlm_cli.train.run_control.StopSignals`) while it runs, to stop after the
current step and save; they put these back when the loop ends.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """A termination signal arrived; a BaseException so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


@contextlib.contextmanager
def raise_on_termination() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into :class:`Terminated` for the duration (main thread only).

    A signal whose handler is not the default is left alone: ``nohup`` ignores SIGHUP on
    purpose. After the first signal the others are ignored, so the cleanup it starts runs
    to its end.
    """
    previous: dict[int, object] = {}

    def handle(signum: int, frame) -> None:
        for other in previous:
            signal.signal(other, signal.SIG_IGN)
        raise Terminated(signum)

    with contextlib.suppress(ValueError):  # not the main thread
        for signum in SIGNALS:
            if signal.getsignal(signum) is signal.SIG_DFL:
                previous[signum] = signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
