"""SIGTERM handling for preemptible nodes (Kubernetes sends SIGTERM, then SIGKILL after a grace period).

The handler only sets a flag; the training loop checks it at each iteration boundary, writes a
checkpoint and raises :class:`TrainingPreempted`. Entry points should exit with
:data:`PREEMPTED_EXIT_CODE` (143 = 128 + SIGTERM, what a shell reports for a SIGTERM'd process)
so that Kubernetes / Kubeflow see a failure and retry, and the retry resumes from the checkpoint.
An exit code of 0 would wrongly mark an unfinished stage as done.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

PREEMPTED_EXIT_CODE = 143


class TrainingPreempted(RuntimeError):
    """Training stopped on SIGTERM after writing ``checkpoint``; resume with ``resume=True``."""

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"preempted (SIGTERM) at iteration {step}; checkpoint {checkpoint}; rerun with resume")
        self.step, self.checkpoint = step, checkpoint


class PreemptionFlag:
    """Context manager: while active, SIGTERM sets ``requested`` instead of killing the process."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Callable[[int, FrameType | None], Any] | int | signal.Handlers | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def __enter__(self) -> PreemptionFlag:
        # signal handlers can only be installed from the main thread; elsewhere we just never fire.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
