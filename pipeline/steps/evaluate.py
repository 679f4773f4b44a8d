"""Step 5: fidelity and perceptual metrics of one generator (one alpha) on the validation split.

Under DVC the sweep's evaluations run one after another, so the bicubic baseline (the same for
every alpha) is evaluated once by the ``evaluate_bicubic`` stage and reused. KFP evaluates the
alphas in parallel pods, where a shared baseline would only serialise them: there each
evaluation computes it itself. The reports are the same either way.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow

from esrgan.evaluation import BaselineMismatch, evaluate_folder, write_report
from esrgan.fileio import write_json
from esrgan.imageio import read_image
from esrgan.models import load_generator
from esrgan.visualize import comparison
from pipeline.errors import StageInputError
from pipeline.registry.tracking import stage_run
from pipeline.steps.context import StepContext
from pipeline.steps.evaluate_bicubic import evaluated_metrics


def _load_baseline(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StageInputError(f"{path}: not a readable bicubic baseline report ({exc})") from None
    if not isinstance(report, dict):  # its contents are checked by evaluate_folder (BaselineMismatch)
        raise StageInputError(f"{path}: not a readable bicubic baseline report (not a JSON object)")
    return report


def evaluate_step(
    ctx: StepContext,
    model_path: Path,
    alpha: float,
    val_dir: Path,
    report_file: Path,
    metrics_file: Path,
    baseline_file: Path | None = None,
) -> dict[str, float | None]:
    """Evaluate one interpolated generator and log a child run for this alpha.

    Writes the full report (per image, conventions, reasons for null metrics) to
    ``report_file`` and the mean metrics of the model and of bicubic to ``metrics_file``
    (what ``dvc metrics show`` lists). ``baseline_file``: the report of
    :func:`~pipeline.steps.evaluate_bicubic.evaluate_bicubic_step` on the same split, reused instead of recomputing bicubic.
    """
    params = ctx.params.evaluate
    scale = ctx.params.model.scale
    baseline = _load_baseline(baseline_file) if baseline_file is not None else None
    model = load_generator(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        hr_dir = ctx.evaluation_images(val_dir, tmp)
        with stage_run(
            ctx.tracking,
            "evaluate",
            {"alpha": alpha, **ctx.params.section("evaluate")},
            run_name=f"evaluate alpha={alpha:g}",
        ):
            try:
                report = evaluate_folder(
                    model,
                    hr_dir,
                    scale=scale,
                    tile=params.tile,
                    metrics=evaluated_metrics(ctx),
                    model_name=f"alpha={alpha:g}",
                    baseline=baseline,
                )
            except BaselineMismatch as exc:
                raise StageInputError(f"{baseline_file}: {exc}") from None
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
    means: dict[str, float | None] = report["model"]["mean"]  # None: a metric no image could give
    return means
