"""Step 1: cut the HR training images into sub-images with MATLAB-bicubic LR pairs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import mlflow

from esrgan.data import extract_validation, extract_with_config
from esrgan.data.layout import TRAIN_DIR, VAL_DIR
from esrgan.fileio import write_json
from pipeline.registry.tracking import stage_run
from pipeline.steps.context import StepContext


def extract_patches_step(ctx: StepContext, data_dir: Path, out_dir: Path, metrics_file: Path) -> dict[str, Any]:
    """``data_dir/train`` -> ``out_dir/train/{hr,lr}``; ``data_dir/val`` -> ``out_dir/val/{hr,lr}`` (whole images)."""
    cfg = ctx.params.extract_patches
    with stage_run(ctx.tracking, "extract_patches", ctx.params.section("extract_patches")):
        start = time.perf_counter()
        train = extract_with_config(data_dir / TRAIN_DIR, out_dir / "train", cfg, overwrite=True)
        val = extract_validation(
            data_dir / VAL_DIR, out_dir / "val", scale=cfg.scale, workers=cfg.workers, overwrite=True
        )
        metrics = {
            "train_images": train["images"],
            "train_patches": train["patches"],
            "train_skipped": sum(train["skipped"].values()),
            "train_converted": sum(train["converted"].values()),
            "val_images": val["images"],
            "seconds": round(time.perf_counter() - start, 3),
        }
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        write_json(metrics_file, metrics)
    return metrics
