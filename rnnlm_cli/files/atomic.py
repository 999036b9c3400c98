"""Files we create are ours: atomic whole-file writes, owned temp files, safe appends.

A whole file (model, token file, plot, tokenizer) is written to a temporary file in the
destination's folder, flushed, fsynced and ``os.replace``-d over the destination (atomic
on POSIX within one file system): a reader sees the old file or the whole new one.

**A link at an output path is never written through.** The rename swaps the directory
entry, so a symbolic link found at the destination is replaced by our own file and the
file it pointed to is neither read nor changed; the same holds for the metrics file,
which is only appended to while it is a plain file with one name (see :func:`open_append`).
Callers that want a link's referent replaced (promotion) resolve the path first.

Temporary files are created with ``O_EXCL | O_NOFOLLOW`` (``mkstemp``) and named
``.rnnlm-tmp-<pid>@<host>-XXXXXXXX[suffix]``, so that a cleaner can tell a file of a live
writer from one left by a killed run (:func:`owner_of_temp`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import stat
import tempfile
from typing import IO, Iterator

from rnnlm_cli.errors import OutputError

TEMP_PREFIX = ".rnnlm-tmp-"

# Errors that mean the destination cannot take the file (disk full, quota, read-only, I/O),
# as opposed to errors reading an input while writing.
WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG, errno.EACCES,
                          errno.EPERM})

# mkstemp's random part is [a-z0-9_], never a "-": the host is all up to the last "-".
# Old names were the prefix and that random part alone, so they never parse.
_OWNED = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)(?:@(.+)-[^-]+|-.*)$")


def _host() -> str:
    # A shared folder may be mounted on several machines: a pid means something only on its host.
    return re.sub(r"[^A-Za-z0-9._]", "_", socket.gethostname())[:64] or "localhost"


def temp_prefix() -> str:
    """The name prefix of this process' temporary files."""
    return f"{TEMP_PREFIX}{os.getpid()}@{_host()}-"


def owner_of_temp(name: str) -> tuple[int, str | None] | None:
    """(pid, host or None) of an rnnlm temporary file's name; None for other or old-style names."""
    match = _OWNED.match(name)
    if match is None:
        return None
    return int(match.group(1)), match.group(2)


def is_this_host(host: str | None) -> bool:
    return host is None or host == _host()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal still exists)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def make_temp(folder: str, suffix: str = "", for_path: str | None = None) -> tuple[int, str]:
    """Create an empty temporary file of ours in ``folder``: (open fd, path), mode 0600.

    ``for_path`` names the output in the error raised when the folder cannot take it.
    """
    try:
        os.makedirs(folder, exist_ok=True)
        return tempfile.mkstemp(prefix=temp_prefix(), suffix=suffix, dir=folder)
    except OSError as exc:
        raise OutputError(f"{for_path or folder}: cannot write ({exc.strerror})") from exc


def write_failure(exc: BaseException) -> str | None:
    """Why a write failed, when ``exc`` (or what it came from) says the destination cannot take it.

    torch.save reports a full disk as a RuntimeError of its stream writer ("unexpected pos",
    "PytorchStreamWriter failed writing file"), chained to the OSError when it wrote through
    a Python file object.
    """
    if isinstance(exc, OSError):
        return (exc.strerror or os.strerror(exc.errno)) if exc.errno in WRITE_ERRORS else None
    if not isinstance(exc, RuntimeError):
        return None  # typed errors (an unreadable input met while writing) keep their own code
    seen = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in WRITE_ERRORS:
            return seen.strerror or os.strerror(seen.errno)
        seen = seen.__cause__ or seen.__context__
    if any(mark in str(exc) for mark in ("PytorchStreamWriter", "unexpected pos", "file write failed")):
        return "the write failed; is the disk full?"
    return None


def _reraise_as_output_error(dest: str, exc: BaseException) -> None:
    reason = write_failure(exc)
    if reason is not None:
        raise OutputError(f"{dest}: cannot write ({reason}); the previous file, if any, is unchanged") from exc


@contextlib.contextmanager
def _owned_temp(dest: str, by_name: bool = False) -> Iterator[tuple[int, str]]:
    """An fd and path of a fresh temp file beside ``dest``; on success it replaces ``dest``.

    ``by_name``: the caller writes the path, not the fd, and may create a new file there
    (safetensors and ONNX writers do); then the file found under the name is checked instead.
    """
    folder = os.path.dirname(os.path.abspath(dest))
    fd, temp = make_temp(folder, for_path=dest)
    # mkstemp creates the file private (0600); give it the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    try:
        try:
            os.fchmod(fd, 0o666 & ~umask)
            yield fd, temp
            if by_name:
                _check_written_by_name(temp, dest)
                # The writer may have made its own file at the name (safetensors does, 0600).
                os.chmod(temp, 0o666 & ~umask)
            else:
                os.fsync(fd)
                _check_still_ours(fd, temp, dest)
            os.replace(temp, dest)
        except BaseException as exc:
            _reraise_as_output_error(dest, exc)
            raise
        finally:
            os.close(fd)
        _fsync_folder(folder)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise


def _check_still_ours(fd: int, temp: str, dest: str) -> None:
    # Someone who can write the folder could swap the temp name for a link of theirs;
    # renaming that into place would publish their file as ours.
    mine, there = os.fstat(fd), os.lstat(temp)
    if (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
        raise OutputError(f"{dest}: the temporary file {temp} was replaced by another process; nothing written")


def _check_written_by_name(temp: str, dest: str) -> None:
    # The writer may have made a new file at the name; what is published must still be a
    # plain file of ours, never a link or a file someone else put there.
    there = os.lstat(temp)
    if not stat.S_ISREG(there.st_mode) or there.st_uid != os.geteuid():
        raise OutputError(f"{dest}: the temporary file {temp} was replaced by another process; nothing written")
    fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path to write; on success it replaces ``dest``, on error it is removed.

    Prefer :func:`atomic_open`, which writes through the descriptor ``mkstemp`` opened
    instead of opening the name again.
    """
    dest = os.fspath(dest)
    with _owned_temp(dest, by_name=True) as (_, temp):
        yield temp


@contextlib.contextmanager
def atomic_open(dest: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a file for writing that appears at ``dest`` only once it is complete."""
    if "b" in mode:
        encoding = None
    dest = os.fspath(dest)
    with _owned_temp(dest) as (fd, _), open(fd, mode, encoding=encoding, closefd=False) as handle:
        yield handle


def open_append(path: str, fresh: bool) -> int:
    """A descriptor that appends to ``path``, a plain file of ours: created anew when ``fresh``.

    An existing ``path`` is appended to only if it is a regular file with one name; a
    symbolic link, hard link, FIFO or device there is replaced by a new empty file of ours
    (never followed, read or written). A directory is refused with :class:`OutputError`.
    """
    if not fresh:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                raise OutputError(f"{path}: cannot append ({exc.strerror})") from exc
            if exc.errno == errno.EISDIR:
                raise OutputError(f"{path}: is a directory; remove it or choose another --out") from exc
        else:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                os.set_blocking(fd, True)
                return fd
            os.close(fd)
    with _owned_temp(path) as (fd, _):
        kept = os.dup(fd)
    os.set_blocking(kept, True)
    # The descriptor was opened without O_APPEND; an empty file's end is offset 0 anyway,
    # and appends below go through os.lseek to the end.
    return kept


def append_line(fd: int, path: str, line: bytes) -> None:
    """Append ``line`` whole or not at all: a failed write is cut back to the previous end."""
    end = os.lseek(fd, 0, os.SEEK_END)
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, end)
        raise OutputError(f"{path}: cannot append ({exc.strerror}); the lines before are intact") from exc


def _fsync_folder(folder: str) -> None:
    # The rename is durable only once the folder's entry is on disk too.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
