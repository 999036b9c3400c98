"""What the commands share for talking to people: stderr logs, progress bars, JSON, and
the standard streams themselves (see :func:`guarded_streams`)."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator

from rich.console import Console

_stderr: Console | None = None


def stderr_console() -> Console:
    """Rich console on stderr; rich itself drops colour for NO_COLOR and non-terminals."""
    global _stderr
    if _stderr is None:
        _stderr = Console(stderr=True, highlight=False)
    return _stderr


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def stderr_is_styled() -> bool:
    """Whether stderr may carry escape codes: a terminal, and NO_COLOR (no-color.org) unset."""
    return stderr_is_terminal() and not os.environ.get("NO_COLOR")


def log(message: str) -> None:
    stderr_console().print(message, markup=False, soft_wrap=True)


def warn(message: str) -> None:
    log(f"rnnlm: warning: {message}")


def print_json(obj: Any) -> None:
    from rnnlm_cli.json_text import json_line

    sys.stdout.write(json_line(obj) + "\n")
    sys.stdout.flush()


def print_text(text: str) -> None:
    """Results as plain text on stdout, through the guarded stream: a destination that cannot
    take them is exit 73, never a quiet exit 0 (``typer.echo`` writes past the guard)."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    """Two columns, name and value, on stderr: a rich table on a terminal, aligned plain text otherwise."""
    if stderr_is_styled():
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for name, value in rows:
            table.add_row(name, Text(value))  # Text: a path with [brackets] is not markup
        stderr_console().print(table)
        return
    width = max((len(name) for name, _ in rows), default=0)
    lines = [title] + [f"  {name.ljust(width)}  {value}" for name, value in rows]
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


class Progress:
    """A progress bar on a terminal; nothing otherwise (logs carry the news there)."""

    def __init__(self, description: str, total: float | None = None):
        self._bar = None
        if stderr_is_terminal():
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=stderr_console(), transient=True)
            self._task = self._bar.add_task(description, total=total)
            self._bar.start()

    def update(self, completed: float, total: float | None = None, description: str | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, total=total, description=description)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reopen_closed_std_fds() -> None:
    # A closed 0/1/2 (`rnnlm ... 2>&-`) would be the number of the next file opened, and
    # whatever writes "stderr" (torch's C++ warnings) would then write into that file.
    for fd, mode in ((0, "r"), (1, "w"), (2, "w")):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # takes the lowest free number: fd
            name = ("stdin", "stdout", "stderr")[fd]
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, mode, encoding="utf-8", closefd=False))


def _to_devnull(stream: Any) -> None:
    """Point ``stream``'s descriptor at /dev/null and drain its buffer there, so that the
    interpreter's final flush does not fail (exit 120) on what could not be written."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    with contextlib.suppress(OSError, ValueError):
        stream.flush()


def _destination(stream: Any) -> str:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        target = os.readlink(f"/proc/self/fd/{stream.fileno()}")
        if target.startswith("/") and not target.startswith("/proc/"):
            return f"stdout ({target})"
    return "stdout"


class _Stream:
    """Delegates to a standard stream; subclasses decide what a failed write means."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)


class _Results(_Stream):
    """stdout: a destination that cannot take the results (full disk, /dev/full) is exit 73.

    A reader that went away (EPIPE) is not an error of ours and stays a BrokenPipeError.
    """

    def _failed(self, exc: OSError) -> BaseException:
        from rnnlm_cli.errors import OutputError

        where = _destination(self._stream)
        _to_devnull(self._stream)
        return OutputError(f"{where}: cannot write the results ({exc.strerror or exc}); "
                           "free space or send them elsewhere")

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._failed(exc) from exc

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._failed(exc) from exc


class _Logs(_Stream):
    """stderr: news for people, never worth a run. A write that fails (the reader of
    `2>&1 | head` went away, a full disk) is dropped, and so is everything after it."""

    _dead = False

    def write(self, text: str) -> int:
        if not self._dead:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self._dead:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._drop()

    def _drop(self) -> None:
        self._dead = True
        _to_devnull(self._stream)


def _reconfigure(stream: Any, errors: str) -> None:
    with contextlib.suppress(AttributeError, ValueError, OSError):
        stream.reconfigure(encoding="utf-8", errors=errors)


@contextlib.contextmanager
def guarded_streams() -> Iterator[None]:
    """The standard streams as the commands need them, for the duration.

    * Text is UTF-8 whatever the locale, as SRILM and kenlm write the bytes of the words
      they read: a cron job under LANG=C or PYTHONIOENCODING=ascii gets the same bytes as
      a terminal, and ``eval --debug 2 | join`` still matches the corpus. Escaping instead
      would change the words; words that came from invalid bytes (surrogateescape) go
      back out as those bytes.
    * stdout failures are exit 73 (a full disk loses results), stderr failures are dropped
      (a dead log reader must not stop a training run).
    * Closed descriptors 0-2 are pointed at /dev/null.

    Flush stdout before leaving, where its failure can still be reported.
    """
    _reopen_closed_std_fds()
    saved = sys.stdout, sys.stderr
    _reconfigure(sys.stdin, "surrogateescape")
    _reconfigure(sys.stdout, "surrogateescape")
    _reconfigure(sys.stderr, "backslashreplace")
    sys.stdout, sys.stderr = _Results(sys.stdout), _Logs(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def silence_stdout() -> None:
    """The reader of stdout went away: drop whatever is still to be written, quietly."""
    _to_devnull(sys.stdout)


def launched_rank() -> int:
    """The rank torchrun gave this process (0 when it was not launched by torchrun), from its
    environment: known before the process group exists and after it is gone, so that an error
    or a stop is reported once, by rank 0, whatever point the run reached."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0
