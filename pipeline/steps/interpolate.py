"""Step 4: one network-interpolated generator per alpha (no MLflow run of its own: the
evaluation of each alpha is where its numbers and pictures go)."""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from esrgan.models import write_interpolated
from esrgan.owned_folders import is_owned, prune

log = logging.getLogger(__name__)


def interpolate_step(psnr_model: Path, gan_model: Path, alpha: float, out: Path) -> Path:
    """Write ``(1 - alpha) * PSNR + alpha * GAN`` to ``out`` (``.pth``, BasicSR layout)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the growth-width note is for spandrel users
        return write_interpolated(psnr_model, gan_model, alpha, out)


def prune_stale_alphas(folder: Path, alphas: Sequence[float], suffix: str) -> list[Path]:
    """Delete ``alpha_<a><suffix>`` files of alphas no longer in the sweep from ``folder``.

    After ``interpolate.alphas`` changes, DVC forgets the removed alphas' stages but leaves their
    files beside the current ones, and a reader cannot tell which are current. Only a folder
    esrgan created (:mod:`esrgan.owned_folders`) is pruned; elsewhere the stale files are named
    in a warning and kept.
    """
    pattern = re.compile(rf"alpha_(.+){re.escape(suffix)}")
    stale = []
    for path in sorted(folder.glob(f"alpha_*{suffix}")) if folder.is_dir() else []:
        match = pattern.fullmatch(path.name)
        try:
            alpha = float(match.group(1)) if match else None
        except ValueError:
            alpha = None
        if alpha is not None and not any(math.isclose(alpha, a, abs_tol=1e-9) for a in alphas):
            stale.append(path.name)
    if stale and not is_owned(folder):
        log.warning(
            "%s: %s not in interpolate.alphas; kept (the folder has no esrgan marker)", folder, ", ".join(stale)
        )
        return []
    removed = prune(folder, stale)
    for path in removed:
        log.info("removed %s: its alpha is no longer in interpolate.alphas", path)
    return removed
