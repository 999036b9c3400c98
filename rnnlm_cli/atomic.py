"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

Write to a temporary file in the destination's folder, flush and fsync it, then
``os.replace`` it over the destination (atomic on POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from typing import Iterator

from rnnlm_cli.errors import OutputError

TEMP_PREFIX = ".rnnlm-tmp-"

# Errors that mean the destination cannot take the file (disk full, quota, read-only, I/O),
# as opposed to errors reading an input while writing.
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG, errno.EACCES, errno.EPERM}


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path to write; on success it replaces ``dest``, on error it is removed."""
    dest = os.fspath(dest)
    folder = os.path.dirname(os.path.abspath(dest))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
    except OSError as exc:
        raise OutputError(f"{dest}: cannot write ({exc.strerror})") from exc
    os.close(fd)
    # mkstemp creates the file private (0600); give it the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    try:
        try:
            yield temp
            with open(temp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temp, dest)
        except OSError as exc:
            if exc.errno in _WRITE_ERRORS:
                raise OutputError(f"{dest}: cannot write ({exc.strerror})") from exc
            raise
        _fsync_folder(folder)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise


@contextlib.contextmanager
def atomic_open(dest: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator:
    """Open a file for writing that appears at ``dest`` only once it is complete."""
    if "b" in mode:
        encoding = None
    with atomic_path(dest) as temp, open(temp, mode, encoding=encoding) as handle:
        yield handle


def _fsync_folder(folder: str) -> None:
    # The rename is durable only once the folder's entry is on disk too.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
