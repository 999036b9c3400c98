"""What the commands share for talking to people: stderr logs, progress bars, JSON."""

from __future__ import annotations

import json
import math
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


def fmt(value: float) -> str:
    """Numbers as SRILM prints them: six significant digits."""
    if isinstance(value, float) and math.isnan(value):
        return "undefined"
    return f"{value:.6g}"


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
