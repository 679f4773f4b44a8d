"""Hooks through which a caller (e.g. the MLflow layer) observes training; the core imports no tracker.

Subclass :class:`Callbacks` and override what you need; every hook runs on rank 0 only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class Callbacks:
    """No-op base class. ``step`` is the number of completed iterations."""

    def on_train_start(self, stage: str, config: Mapping[str, Any], info: Mapping[str, Any]) -> None:
        """Before the first iteration; ``info`` has the backbone, parameter counts, resume step, device."""

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Every ``log_every`` iterations: losses, mean D logits, lr, it/s (averaged over the interval)."""

    def on_validation(self, step: int, metrics: Mapping[str, float], image_paths: Sequence[Path]) -> None:
        """After validation: ``psnr_y``, ``psnr_y_bicubic``, and the sample PNGs written."""

    def on_checkpoint(self, step: int, path: Path) -> None:
        """After a checkpoint file is in place."""

    def on_train_end(self, result: Any) -> None:
        """With the :class:`~esrgan.training.loop.TrainResult`."""


class CallbackList(Callbacks):
    """Fan one call out to several callbacks, in order."""

    def __init__(self, callbacks: Sequence[Callbacks]) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, stage: str, config: Mapping[str, Any], info: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_start(stage, config, info)

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_log(step, metrics)

    def on_validation(self, step: int, metrics: Mapping[str, float], image_paths: Sequence[Path]) -> None:
        for cb in self.callbacks:
            cb.on_validation(step, metrics, image_paths)

    def on_checkpoint(self, step: int, path: Path) -> None:
        for cb in self.callbacks:
            cb.on_checkpoint(step, path)

    def on_train_end(self, result: Any) -> None:
        for cb in self.callbacks:
            cb.on_train_end(result)


def as_callbacks(callbacks: Callbacks | Sequence[Callbacks] | None) -> Callbacks:
    if callbacks is None:
        return Callbacks()
    if isinstance(callbacks, Callbacks):
        return callbacks
    return CallbackList(callbacks)
