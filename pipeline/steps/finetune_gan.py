"""Stage finetune_gan: perceptual + RaGAN + L1 fine-tuning, initialised from the PSNR generator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.steps.context import StepContext
from pipeline.steps.training import train_stage


def finetune_gan_step(
    ctx: StepContext,
    patches_dir: Path,
    psnr_model: Path,
    run_dir: Path,
    model_out: Path,
    metrics_file: Path,
    resume: bool = True,
    init_dir: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune with the perceptual + RaGAN + L1 loss, starting from the PSNR generator, or from
    ``finetune_gan.init.generator`` (the registry's champion, say) and ``init.discriminator``."""
    return train_stage(ctx, "gan", patches_dir, psnr_model, run_dir, model_out, metrics_file, resume, init_dir)
