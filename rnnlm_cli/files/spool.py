"""Inputs that can be read only once (pipes, stdin, process substitution) made re-readable.

Sniffing a file's format and then loading it opens it twice; a FIFO, ``/dev/stdin``,
``<(...)`` (``/dev/fd/N``) or ``-`` gives its bytes to the first reader only, so the
second one would silently see the input without its head. :func:`spooled` copies such
an input once, in bounded-memory chunks, into a private temporary file and yields that
file's path; a regular file is yielded as it is, with no copy::

    with spooled(path) as readable:          # readable: open it as often as needed
        if is_token_file(readable): ...

The copy is named like every temporary file of ours, ``.rnnlm-tmp-<pid>@<host>-*`` (so a
cleaner can tell whether its owner still runs), created with ``O_EXCL`` and mode 0600,
and removed when the block ends, however it ends. Errors raised inside the block that
name the copy are renamed to the input's own name, so messages never mention a file the
user has never heard of.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from typing import Iterator

from rnnlm_cli.files.atomic import temp_prefix
from rnnlm_cli.errors import InputMissingError, OutputError, RnnlmError

STDIN = "-"
CHUNK_BYTES = 1 << 20
"""Bytes copied at a time: memory stays at one chunk, whatever the input's length."""
SUFFIX = ".spool"


def needs_spooling(path: str | os.PathLike) -> bool:
    """Whether ``path`` is read-once: stdin ("-"), a FIFO, a character device or a socket.

    A missing path and a directory are not (the caller's own checks report them); the
    answer costs one ``stat`` and reads nothing.
    """
    path = os.fspath(path)
    if path == STDIN:
        return True
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # ValueError: a path with a NUL byte
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@contextlib.contextmanager
def spooled(path: str | os.PathLike, folder: str | None = None) -> Iterator[str]:
    """Yield a path to ``path``'s bytes that can be opened any number of times.

    A regular file (or a missing one: the caller reports it) is yielded unchanged. A
    read-once input is copied once into a temporary file in ``folder`` (default: the
    temporary folder, ``$TMPDIR``), removed when the block ends.
    """
    path = os.fspath(path)
    if not needs_spooling(path):
        yield path
        return
    name = "stdin" if path == STDIN else path
    where = folder if folder is not None else tempfile.gettempdir()
    try:
        # mkstemp opens with O_CREAT | O_EXCL and mode 0600: never someone else's file or link.
        fd, copy = tempfile.mkstemp(prefix=temp_prefix(), suffix=SUFFIX, dir=where)
    except OSError as exc:
        raise OutputError(f"{where}: cannot create a temporary copy of {name} ({exc.strerror}); "
                          "set TMPDIR to a writable folder") from exc
    try:
        try:
            _copy(path, name, fd, where)
        finally:
            os.close(fd)
        try:
            yield copy
        except RnnlmError as exc:
            _rename_in_message(exc, copy, name)
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(copy)


def _copy(path: str, name: str, sink: int, where: str) -> None:
    """Copy ``path``'s bytes to the descriptor ``sink``: read errors are the input's, write errors the folder's."""
    if path == STDIN and sys.stdin is None:
        raise InputMissingError("stdin: not open (the command was started with stdin closed)")
    try:
        source = sys.stdin.buffer if path == STDIN else open(path, "rb", buffering=0)
    except OSError as exc:
        raise InputMissingError(f"{name}: cannot read ({exc.strerror or exc})") from exc
    try:
        while True:
            try:
                chunk = source.read(CHUNK_BYTES)
            except OSError as exc:
                raise InputMissingError(f"{name}: cannot read ({exc.strerror or exc})") from exc
            if not chunk:
                return
            view = memoryview(chunk)
            while view:
                try:
                    view = view[os.write(sink, view):]
                except OSError as exc:
                    hint = "; set TMPDIR to a folder with room" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
                    raise OutputError(f"{where}: cannot hold a temporary copy of {name} "
                                      f"({exc.strerror}){hint}") from exc
    finally:
        if source is not sys.stdin.buffer:
            source.close()


def _rename_in_message(exc: RnnlmError, copy: str, name: str) -> None:
    # An error about the copy is about the input: say so in the user's terms. The
    # exception is changed in place so its type and exit code stay what they were.
    if exc.args and isinstance(exc.args[0], str) and copy in exc.args[0]:
        exc.args = (exc.args[0].replace(copy, name), *exc.args[1:])
