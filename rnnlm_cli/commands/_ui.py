"""What the commands share for talking to people: stderr logs, progress bars, JSON."""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

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


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(_json_safe(obj)) + "\n")
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
