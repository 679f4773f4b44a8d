"""Step 4: one network-interpolated generator per alpha (no MLflow run of its own: the
evaluation of each alpha is where its numbers and pictures go)."""

from __future__ import annotations

import warnings
from pathlib import Path

from esrgan.models import write_interpolated


def interpolate_step(psnr_model: Path, gan_model: Path, alpha: float, out: Path) -> Path:
    """Write ``(1 - alpha) * PSNR + alpha * GAN`` to ``out`` (``.pth``, BasicSR layout)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the growth-width note is for spandrel users
        return write_interpolated(psnr_model, gan_model, alpha, out)
