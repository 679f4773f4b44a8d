"""Step 5: fidelity and perceptual metrics of one generator (one alpha) on the validation split."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow

from esrgan.evaluation import METRICS, evaluate_folder, write_report
from esrgan.fileio import write_json
from esrgan.imageio import read_image
from esrgan.models import load_generator
from esrgan.visualize import comparison
from pipeline.params import FIDELITY_METRICS
from pipeline.steps.context import StepContext
from pipeline.tracking import stage_run


def evaluate_step(
    ctx: StepContext, model_path: Path, alpha: float, val_dir: Path, report_file: Path, metrics_file: Path
) -> dict[str, Any]:
    """Evaluate one interpolated generator and log a child run for this alpha.

    Writes the full report (per image, conventions, reasons for null metrics) to
    ``report_file`` and the mean metrics of the model and of bicubic to ``metrics_file``
    (what ``dvc metrics show`` lists).
    """
    params = ctx.params.evaluate
    scale = ctx.params.model.scale
    metrics = METRICS if params.perceptual else FIDELITY_METRICS
    model = load_generator(model_path)
    images = sorted(p for p in val_dir.iterdir() if p.is_file())
    hr_dir = val_dir
    with tempfile.TemporaryDirectory() as tmp:
        if params.max_images is not None:
            hr_dir = Path(tmp)
            for p in images[: params.max_images]:
                (hr_dir / p.name).symlink_to(p.resolve())
        with stage_run(
            ctx.tracking,
            "evaluate",
            {"alpha": alpha, **ctx.params.section("evaluate")},
            run_name=f"evaluate alpha={alpha:g}",
        ):
            report = evaluate_folder(
                model, hr_dir, scale=scale, tile=params.tile, metrics=metrics, model_name=f"alpha={alpha:g}"
            )
            report["alpha"] = alpha
            # Not the temporary folder of symlinks: equal results must give equal report bytes.
            report["hr_dir"], report["max_images"] = str(val_dir), params.max_images
            write_report(report, report_file)
            write_json(
                metrics_file, {"alpha": alpha, "model": report["model"]["mean"], "bicubic": report["bicubic"]["mean"]}
            )
            mlflow.log_metrics({k: float(v) for k, v in report["model"]["mean"].items() if v is not None})
            mlflow.log_metrics(
                {f"bicubic_{k}": float(v) for k, v in report["bicubic"]["mean"].items() if v is not None}
            )
            mlflow.log_artifact(str(report_file))
            first = sorted(hr_dir.iterdir())[0]
            strip = comparison(read_image(first), {f"alpha {alpha:g}": model}, scale)
            mlflow.log_image(strip, f"samples/{first.stem}_lr_bicubic_sr_hr.png")
    return report["model"]["mean"]
