"""Stage pretrain_psnr: the PSNR-oriented (L1) generator, the first of ESRGAN's two training stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.steps.context import StepContext
from pipeline.steps.training import train_stage


def pretrain_psnr_step(
    ctx: StepContext,
    patches_dir: Path,
    run_dir: Path,
    model_out: Path,
    metrics_file: Path,
    resume: bool = True,
    init_dir: Path | None = None,
) -> dict[str, Any]:
    """Train the PSNR-oriented generator (L1); ``run_dir`` keeps checkpoints so a killed run resumes.

    With ``pretrain_psnr.init.generator`` it starts from those weights (``iterations: 0``: they
    are the PSNR model); ``init_dir``: where the resolve_init stage put them (default: resolve here).
    """
    return train_stage(ctx, "psnr", patches_dir, None, run_dir, model_out, metrics_file, resume, init_dir)
