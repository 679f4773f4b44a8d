"""Stage evaluate_bicubic: the bicubic baseline on the validation split, evaluated once for the sweep.

Every alpha's ``evaluate`` stage reuses this report under DVC; KFP's parallel evaluation pods
compute the baseline themselves (see :mod:`pipeline.steps.evaluate`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from esrgan.evaluation import METRICS, evaluate_folder, write_report
from pipeline.params import FIDELITY_METRICS
from pipeline.steps.context import StepContext


def evaluated_metrics(ctx: StepContext) -> tuple[str, ...]:
    """The metrics ``evaluate`` computes: all, or the fidelity ones, less ``skip_metrics``."""
    params = ctx.params.evaluate
    return tuple(m for m in (METRICS if params.perceptual else FIDELITY_METRICS) if m not in params.skip_metrics)


def evaluate_bicubic_step(ctx: StepContext, val_dir: Path, report_file: Path) -> dict[str, float | None]:
    """Evaluate the bicubic baseline on the validation split, for :func:`~pipeline.steps.evaluate.evaluate_step` to reuse.

    No MLflow run: every alpha's run logs these figures as ``bicubic_*`` beside its own.
    """
    params = ctx.params.evaluate
    with tempfile.TemporaryDirectory() as tmp:
        hr_dir = ctx.evaluation_images(val_dir, tmp)
        report = evaluate_folder(
            None, hr_dir, scale=ctx.params.model.scale, tile=params.tile, metrics=evaluated_metrics(ctx)
        )
    report["hr_dir"], report["max_images"] = str(val_dir), params.max_images
    write_report(report, report_file)
    means: dict[str, float | None] = report["model"]["mean"]  # None: a metric no image could give
    return means
