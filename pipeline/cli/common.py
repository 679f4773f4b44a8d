"""What the ``esrgan`` command groups share: the user-error type, JSON output, the tracking URI
default and the registry calls' error translation."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import EXIT_USER_ERROR, PipelineError

#: Exit status for bad input (unreadable model, missing file); 1 means "some items failed".
EXIT_BAD_INPUT = EXIT_USER_ERROR

Handler = Callable[[argparse.Namespace], int]


class UserError(PipelineError):
    """An error caused by the user's input; printed as one line without a traceback."""


def print_json(data: object) -> int:
    import json

    print(json.dumps(data, indent=2, default=str))
    return 0


def tracking_uri(arg: str | None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the project's ``./mlflow.db`` (as the pipeline)."""
    import os

    # A registry command should fail in seconds when the server is down, not after MLflow's minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from pipeline.registry.tracking import adopt_uri_credentials, check_reachable, default_tracking_uri

    uri = arg or default_tracking_uri(Path.cwd())
    if uri.startswith(("http://", "https://")):
        # Probe first (one line within seconds), and keep the URI's password out of what MLflow prints.
        check_reachable(uri)
        uri = adopt_uri_credentials(uri)
    return uri


def registry_call(fn: Callable[[], int]) -> int:
    from mlflow.exceptions import MlflowException

    from pipeline.registry.aliases import RegistryError

    try:
        return fn()
    except PipelineError:  # already one line (TrackingUnavailable is an OSError too)
        raise
    except RegistryError as exc:
        raise UserError(str(exc)) from None
    except MlflowException as exc:  # a call outside aliases.registry_errors (an HTTP 401, a 500...)
        first = ((exc.message or str(exc)).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"MLflow tracking server: {first[:300]}") from None
    except OSError as exc:  # connection refused, DNS: requests' errors are OSErrors
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot reach the tracking server: {reason[:300]}") from None
