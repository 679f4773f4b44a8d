"""Stopping a server started in its own process group (``start_new_session=True``).

Shared by the benchmarks (``bench/serving_load.py``) and the end-to-end tests
(``tests/e2e/servers.py``, ``tests/e2e/containers.py``): both already import ``pipeline``, the
installed package, whereas ``bench`` and ``tests`` are not importable from each other.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop_process_group(proc: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM the group led by ``proc``, then SIGKILL it if ``proc`` has not exited after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
