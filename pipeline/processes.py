"""Server processes on the loopback address: started in their own process group, waited for over
HTTP, stopped by their process group id.

Shared by the benchmarks (``bench/serving_load.py``) and the end-to-end tests
(``tests/e2e/servers.py``, ``tests/e2e/containers.py``): both already import ``pipeline``, the
installed package, whereas ``bench`` and ``tests`` are not importable from each other.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mlflow_serve_command(mlflow: str | os.PathLike[str], model_uri: str, port: int) -> list[str]:
    """``mlflow models serve`` of ``model_uri`` in the current environment, on the loopback ``port``."""
    local = ["--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)]
    return [str(mlflow), "models", "serve", "-m", model_uri, *local]


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    """Return once ``url`` answers 200; raise if ``proc`` exits first or ``timeout`` seconds pass."""
    # 300 s: a first `mlflow server` start (schema migrations) on a loaded 2-core machine can pass 120 s.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {log.read_text()[-2000:]}")


def stop_process_group(proc: subprocess.Popen[bytes], grace: float = 20) -> None:
    """SIGTERM the group led by ``proc``, then SIGKILL it if ``proc`` has not exited after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def server_process(
    cmd: list[str],
    health_url: str,
    log: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    grace: float = 20,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``cmd`` in its own process group (output to ``log``), wait for ``health_url``, and stop
    the group on exit (SIGTERM, then SIGKILL after ``grace`` seconds)."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(health_url, proc, log, timeout)
        yield proc
    finally:
        stop_process_group(proc, grace)
