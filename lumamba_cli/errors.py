"""Errors a user can act on, and the exit code each one maps to (documented in README.md).

Raise :class:`LumambaError` (or a subclass) for anything caused by the input, the weights or the
environment: the CLI prints its one-line message and exits with its code, with no traceback unless
``--debug``. Anything else is a bug and exits with ``ExitCode.INTERNAL``.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1  # a bug: please report it with --debug output
    USAGE = 2  # bad command-line arguments (Typer/Click's own code)
    BAD_INPUT = 3  # file missing, not a recording, truncated, lying header, unreadable
    MONTAGE = 4  # channels cannot satisfy the task / no channel matches the registry
    WEIGHTS = 5  # encoder or head missing, checksum mismatch, keys do not cover the model
    PARTIAL = 6  # batch run: at least one file failed, the others were processed
    NETWORK = 7  # download needed but offline / hub unreachable
    OUTPUT = 8  # cannot write the results: disk full, file too large, name too long, permission, unusable --out
    INTERRUPTED = 130


class LumambaError(Exception):
    """A problem the user can fix. ``str(err)`` is one line naming the file and what is wrong."""

    code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class BadInputError(LumambaError):
    code = ExitCode.BAD_INPUT


class MontageError(LumambaError):
    code = ExitCode.MONTAGE


class WeightsError(LumambaError):
    code = ExitCode.WEIGHTS


class NetworkError(LumambaError):
    code = ExitCode.NETWORK


class UsageError(LumambaError):
    code = ExitCode.USAGE


class OutputError(LumambaError):
    code = ExitCode.OUTPUT


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (library messages can be paragraphs), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
