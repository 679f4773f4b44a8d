"""The pipeline's user-error family, importable without heavy dependencies.

Raise a :class:`PipelineError` (or a subclass) for anything the user can fix: bad parameters,
missing inputs, an unreachable tracking server. ``esrgan``'s ``main()`` catches the family once
and prints each line of the message as ``esrgan: error: <line>`` (no traceback), exit status
:data:`EXIT_USER_ERROR`. Several problems go in one message, one complete problem per line.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Exit status of every user error (bad parameters, bad input files, unreachable services).
EXIT_USER_ERROR = 2


class PipelineError(Exception):
    """A problem the user can fix; the message is one or more self-contained lines."""

    def __init__(self, message: str | Sequence[str]) -> None:
        lines = [message] if isinstance(message, str) else list(message)
        super().__init__("\n".join(lines))

    @property
    def problems(self) -> list[str]:
        """The message split into its lines (one problem each)."""
        return [line for line in str(self).splitlines() if line.strip()]


class ParamsError(PipelineError, ValueError):
    """Invalid ``params.yaml`` (or KFP parameters); one line per problem, each naming the file and key."""


class StageInputError(PipelineError, ValueError):
    """A stage's input files are missing or do not fit its parameters; nothing was changed."""


class TrackingUnavailable(PipelineError, ConnectionError):
    """The MLflow tracking server does not answer; the message names the URI."""
