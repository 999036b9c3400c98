"""Typed errors, each carrying the exit code the command line returns for it.

The codes follow BSD's sysexits where one fits, so scripts and cron jobs can tell
"fix your input" from "try again later" without parsing messages.
"""

from __future__ import annotations

from typing import Any


class RnnlmError(Exception):
    """Base of every error the toolkit reports as one line on stderr."""

    exit_code = 1


class UsageError(RnnlmError):
    """A flag or config value that cannot work (bad size, unknown cell, missing GPU)."""

    exit_code = 2


class DataError(RnnlmError):
    """Input data that cannot be used: empty corpus, invalid UTF-8 under --strict, bad token file."""

    exit_code = 65


class InputMissingError(RnnlmError):
    """A named input file or directory does not exist or cannot be read."""

    exit_code = 66


class CheckpointError(DataError):
    """A model file that is corrupt, of another format or version, or would run code."""


class TokenizerMismatchError(DataError):
    """A model and a tokenizer or token file that were not made for each other."""


class OutputError(RnnlmError):
    """An output path that cannot be written."""

    exit_code = 73


class LockedError(RnnlmError):
    """Another run holds the output or the promotion target: try again later (sysexits' EX_TEMPFAIL)."""

    exit_code = 75


class NotPromotedError(RnnlmError):
    """Training worked, but the new model is not better than the one in place."""

    exit_code = 3


class TooLittleTimeError(RnnlmError):
    """``--max-wall-time`` leaves too little to train once the data is read and the
    validations after training are paid for: refused before the first step, with no model,
    state or metrics file written (exit 4; a longer --max-wall-time is the fix, not a retry)."""

    exit_code = 4


class TrainingInterrupted(RnnlmError):
    """A signal stopped training after a resumable checkpoint was written (exit 128 + signal)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def shown(value: Any) -> str:
    """``repr(value)`` cut to a length that fits an error line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:50] + f"... ({len(text)} characters)"
