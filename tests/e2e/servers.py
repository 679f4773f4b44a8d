"""Real server processes for end-to-end tests, started on loopback and stopped by process id."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.processes import free_port, mlflow_serve_command, server_process
from tests.e2e.project import VENV_BIN, env


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all bound at once, so none is handed out twice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


@contextlib.contextmanager
def process(
    cmd: list[str], cwd: Path, health_url: str, log: Path, grace: float = 20, **extra_env: str
) -> Iterator[subprocess.Popen]:
    """Start ``cmd`` in its own process group, wait for ``health_url``, stop the group on exit
    (SIGTERM, then SIGKILL after ``grace`` seconds)."""
    with server_process(cmd, health_url, log, cwd=cwd, env=env(**extra_env), grace=grace) as proc:
        yield proc


@contextlib.contextmanager
def mlflow_server(workdir: Path, artifacts_destination: str | None = None, **extra_env: str) -> Iterator[str]:
    """``mlflow server`` with a SQLite store and proxied artifacts; yields its URL.

    ``artifacts_destination`` defaults to a local folder; for ``s3://...`` pass the server's
    AWS credentials and ``MLFLOW_S3_ENDPOINT_URL`` in ``extra_env`` (clients then need none).
    """
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    destination = artifacts_destination or (workdir / "artifacts").as_uri()
    cmd = [
        str(VENV_BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{workdir / 'server.db'}",
        "--artifacts-destination",
        destination,
        "--workers",
        "1",
    ]
    url = f"http://127.0.0.1:{port}"
    with process(cmd, workdir, f"{url}/health", workdir / "server.log", **extra_env):
        yield url


@contextlib.contextmanager
def model_server(model_uri: str, workdir: Path, tracking_uri: str, **extra_env: str) -> Iterator[str]:
    """``mlflow models serve`` of a registry URI with the local environment; yields its URL."""
    port = free_port()
    cmd = mlflow_serve_command(VENV_BIN / "mlflow", model_uri, port)
    url = f"http://127.0.0.1:{port}"
    with process(cmd, workdir, f"{url}/ping", workdir / "serve.log", MLFLOW_TRACKING_URI=tracking_uri, **extra_env):
        yield url


def post_invocations(url: str, payload: dict[str, Any]) -> tuple[int, Any]:
    """POST ``payload`` to a served model's ``/invocations``; the status and the JSON body, errors included."""
    req = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
