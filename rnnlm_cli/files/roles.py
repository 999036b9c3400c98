"""The files one command reads and writes, checked against each other before any work.

A cron line with one name typed twice must not destroy the file users load: ``--out X
--promote-if-better X`` would overwrite X at the first validation and then compare X with
itself; ``tokenize X --out X`` or ``train X --out X.pt`` (whose token file is ``X``) would
replace the input with its own encoding. So every command names its inputs and outputs
up front, and two roles that resolve to one file (through symlinks, ``..`` or hard links)
are refused with exit 2 before a byte is written.

Outputs are checked for what can be known without writing: not empty, not a folder
(``runs/``), not a device, FIFO or socket, and a folder that can take new files.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from typing import Iterable

from rnnlm_cli.errors import OutputError, UsageError

STDIN = "-"
STDOUT_ROLE = "standard output"


@dataclass(frozen=True)
class FileRole:
    """One file a command uses: ``name`` is how the user gave it (a flag, or CORPUS)."""

    name: str
    path: str
    writes: bool = False


def check_file_roles(roles: Iterable[FileRole], may_share: Iterable[tuple[str, str]] = (),
                     check_stdout: bool = True) -> None:
    """UsageError when two roles name one file, unless the pair is in ``may_share``.

    Roles that only read may share a file with each other only when listed too: training on
    the validation text is as much a mistake as writing over the corpus. A regular file
    behind standard output (``>> model.pt``) counts as one more output.
    """
    roles = list(roles)
    check_one_stdin(roles)
    given = [role for role in roles if role.path and role.path != STDIN]
    if check_stdout:
        stdout = _stdout_file()
        if stdout is not None:
            given.append(FileRole(STDOUT_ROLE, stdout, writes=True))
    allowed = {frozenset(pair) for pair in may_share}
    seen: dict[object, FileRole] = {}
    for role in given:
        key = file_identity(role.path)
        other = seen.get(key)
        if other is None:
            seen[key] = role
            continue
        if frozenset((other.name, role.name)) in allowed:
            continue
        if role.name == STDOUT_ROLE:
            raise UsageError(f"{other.path}: standard output is redirected into {other.name}; "
                             "send the output to another file")
        raise UsageError(f"{other.name} {other.path} and {role.name} {role.path} are the same file; "
                         f"give {role.name} another path")


def check_one_stdin(roles: Iterable[FileRole]) -> None:
    """UsageError when two roles are ``-``: standard input is read once, by one of them (the
    other would find it empty, or a pipe's bytes split between the two)."""
    from_stdin = [role.name for role in roles if role.path == STDIN and not role.writes]
    if len(from_stdin) > 1:
        raise UsageError(f"{' and '.join(from_stdin)} are all '-': standard input can be only one of them"
                         if len(from_stdin) > 2 else
                         f"{' and '.join(from_stdin)} are both '-': standard input can be only one of them")


def check_stdout_apart(roles: Iterable[FileRole]) -> None:
    """UsageError when two roles read standard input, or standard output is redirected into
    one of ``roles``' files (``>> model.pt``).

    For commands whose inputs may repeat (scoring the text a mix weight was fitted on)."""
    roles = list(roles)
    check_one_stdin(roles)
    stdout = _stdout_file()
    if stdout is None:
        return
    key = file_identity(stdout)
    for role in roles:
        if role.path and role.path != STDIN and file_identity(role.path) == key:
            raise UsageError(f"{role.path}: standard output is redirected into {role.name}; "
                             "send the output to another file")


def file_identity(path: str) -> object:
    """What makes two names one file: the inode when it exists, else the resolved path."""
    try:
        info = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    return ("inode", info.st_dev, info.st_ino)


def _stdout_file() -> str | None:
    """The regular file standard output is redirected to, if any (pipes and terminals are not files)."""
    try:
        fd = sys.stdout.fileno()
        info = os.fstat(fd)
    except (AttributeError, OSError, ValueError):
        return None  # replaced by a test harness, or closed
    if not stat.S_ISREG(info.st_mode):
        return None
    return f"/proc/self/fd/{fd}" if os.path.exists(f"/proc/self/fd/{fd}") else None


def check_output_file(path: str, name: str) -> None:
    """Refuse an output path that cannot end up as a regular file: exit 2 for the path, 73 for the folder."""
    if not path or not path.strip():
        raise UsageError(f"{name}: the path is empty; give a file name such as model.pt")
    if path.endswith(("/", os.sep)) or os.path.basename(path) in (".", ".."):
        raise UsageError(f"{name} {path}: names a folder; give a file name such as {path.rstrip('/')}/model.pt")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise OutputError(f"{name} {path}: cannot be written ({exc.strerror})") from exc
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{name} {path}: is {_kind(info.st_mode)}, not a regular file; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputError(f"{name} {path}: {existing} is not a folder")
    # The file is written as a temporary file beside it and renamed: the folder must take new entries.
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{name} {path}: cannot write in {existing} (read-only or permission denied)")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
