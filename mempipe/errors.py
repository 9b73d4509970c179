"""Errors a user can act on: each carries a one-line message and the exit code the CLI uses
(`exit_with` is how the command ends on one)."""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def exit_with(message: str, code: int) -> NoReturn:
    """`mempipe: <message>` on stderr and exit `code`, skipping interpreter shutdown: it
    would wait for a model thread still finishing its step."""
    print(f"mempipe: {message}", file=sys.stderr)
    sys.stderr.flush()
    os._exit(code)


class MempipeError(Exception):
    """Something the user can fix; the CLI prints `mempipe: <message>` and exits `exit_code`."""

    exit_code = 1


class UsageError(MempipeError):
    """Bad input: a pipeline that does not parse, a missing file, an unknown option."""

    exit_code = 2


class PipelineSyntaxError(UsageError):
    """The pipeline text does not parse; `position` is the 0-based character offset."""

    def __init__(self, message: str, text: str, position: int):
        self.text, self.position = text, position
        super().__init__(f"{message} (at character {position + 1})")


class ModelError(UsageError):
    """The model named by --model / MEMPIPE_MODEL cannot be loaded."""


class BudgetExceeded(MempipeError):
    """A prompt plus its output would not fit the agent's context budget."""


class StageError(MempipeError):
    """A stage failed while the pipeline ran; names the stage and keeps the cause's exit code."""

    def __init__(self, index: int, name: str, cause: BaseException):
        self.index, self.name, self.cause = index, name, cause
        self.exit_code = cause.exit_code if isinstance(cause, MempipeError) else 1
        detail = str(cause) or type(cause).__name__
        if not isinstance(cause, MempipeError):
            detail = f"{type(cause).__name__}: {detail}"
        super().__init__(f"stage {index + 1} ({name}): {detail}")
