"""The pipeline's user-error family, importable without heavy dependencies.

Raise a :class:`PipelineError` (or a subclass) for anything the user can fix: bad parameters,
missing inputs, an unreachable tracking server. ``esrgan``'s ``main()`` catches the family once
and prints each line of the message as ``esrgan: error: <line>`` (no traceback), exit status
:data:`EXIT_USER_ERROR`. Several problems go in one message, one complete problem per line.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence

#: Exit status of every user error (bad parameters, bad input files, unreachable services).
EXIT_USER_ERROR = 2

#: Environment variables whose values are secrets: :func:`redact` masks them wherever they appear.
SECRET_ENV_VARS = (
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "KFP_TOKEN",  # esrgan kfp submit sends it as the bearer token
)
#: Shorter secret values are not masked: replacing every "a" or "12" would garble each message.
MIN_SECRET_LENGTH = 4
#: ``scheme://userinfo@``, to the last ``@`` before a blank: a password may hold an ``@``, or a ``/``
#: that was not percent-encoded (an ``@`` later in the same word masks more than the userinfo).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)\S*@")


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


def redact(text: str) -> str:
    """``text`` with its credentials masked as ``***``: the userinfo of every URL
    (``http://user:pw@host`` -> ``http://***@host``, ``https://token@host`` too) and the value of
    each :data:`SECRET_ENV_VARS` variable that appears literally. Every message and log line the
    ``esrgan`` command prints passes through here."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name, "")
        if len(value) >= MIN_SECRET_LENGTH and value in text:
            text = text.replace(value, "***")
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record through :func:`redact` (message and arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Format ``record``'s message and replace it by its :func:`redact`-ed text (in place)."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: logging reports it itself later
        return record
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    return record


def install_log_redaction() -> None:
    """Redact every log line from now on: a :class:`RedactingFilter` on each root handler, and the
    same on every record as it is created (MLflow's loggers have their own handlers and do not
    propagate to the root). Idempotent."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacts", False):
        return

    def make_record(*args: object, **kwargs: object) -> logging.LogRecord:
        return redact_record(factory(*args, **kwargs))

    make_record.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)
