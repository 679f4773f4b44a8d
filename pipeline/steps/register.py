"""Step 6: compare every alpha, draw the perception-distortion plot, pick the champion and
register it in the MLflow model registry with its alias."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from esrgan.fileio import atomic_write, write_json
from pipeline.errors import PipelineError
from pipeline.params import METRIC_DIRECTION, SelectionParams
from pipeline.registry import log_generator_model
from pipeline.steps.context import StepContext
from pipeline.tracking import finish_parent, parent_run_id, stage_run

PLOT_COLUMNS = ("alpha", "psnr_y", "ssim_y", "psnr_rgb", "niqe", "lpips_alex", "stlpips_alex", "stlpips_vgg")


class SelectionError(PipelineError, ValueError):
    """No alpha satisfies the selection rule."""


def summarise(reports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per alpha (sorted), plus the bicubic baseline as ``alpha = None``."""
    rows = [{"alpha": float(r["alpha"]), **r["model"]["mean"]} for r in reports]
    rows.sort(key=lambda r: r["alpha"])
    rows.append({"alpha": None, **reports[0]["bicubic"]["mean"]})
    return rows


def select_alpha(rows: Sequence[Mapping[str, Any]], rule: SelectionParams) -> dict[str, Any]:
    """Apply the selection rule to the per-alpha rows; returns the chosen row."""
    alphas = [r for r in rows if r["alpha"] is not None]
    if rule.rule == "fixed":
        chosen = [r for r in alphas if rule.alpha is not None and math.isclose(r["alpha"], rule.alpha)]
        if not chosen:
            raise SelectionError(f"register.selection.alpha {rule.alpha} is not among the evaluated alphas")
        return dict(chosen[0])
    psnr_model = next((r for r in alphas if r["alpha"] == 0.0), None)
    if psnr_model is None or psnr_model.get("psnr_y") is None:
        raise SelectionError("the PSNR model (alpha 0) has no psnr_y: cannot apply the margin")
    floor = psnr_model["psnr_y"] - rule.psnr_margin_db
    eligible = [r for r in alphas if r.get("psnr_y") is not None and r["psnr_y"] >= floor]
    scored = [r for r in eligible if r.get(rule.metric) is not None]
    if not scored:
        raise SelectionError(f"no alpha has a value for {rule.metric!r} within {rule.psnr_margin_db} dB of alpha 0")
    # Best score in the metric's own direction; ties go to the smaller alpha (closer to the faithful model).
    sign = 1.0 if METRIC_DIRECTION[rule.metric] == "min" else -1.0
    return dict(min(scored, key=lambda r: (sign * r[rule.metric], r["alpha"])))


def write_plot_data(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """CSV for ``dvc plots show``: one row per alpha (bicubic excluded: it is not on the curve)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PLOT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        if r["alpha"] is not None:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in PLOT_COLUMNS})
    return atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def draw_plot(rows: Sequence[Mapping[str, Any]], chosen_alpha: float, path: Path) -> Path:
    """PSNR-Y against each available perceptual metric, one point per alpha, bicubic marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    perceptual = [
        m for m in ("niqe", "lpips_alex", "stlpips_alex", "stlpips_vgg") if any(r.get(m) is not None for r in rows)
    ]
    fig, axes = plt.subplots(1, max(1, len(perceptual)), figsize=(5 * max(1, len(perceptual)), 4), squeeze=False)
    for ax, metric in zip(axes[0], perceptual, strict=False):
        pts = [r for r in rows if r["alpha"] is not None and r.get(metric) is not None and r.get("psnr_y") is not None]
        ax.plot([r["psnr_y"] for r in pts], [r[metric] for r in pts], "o-", color="tab:blue", label="interpolated")
        for r in pts:
            ax.annotate(f"{r['alpha']:g}", (r["psnr_y"], r[metric]), textcoords="offset points", xytext=(4, 4))
        best = [r for r in pts if math.isclose(r["alpha"], chosen_alpha)]
        if best:
            ax.plot(
                best[0]["psnr_y"],
                best[0][metric],
                "*",
                ms=16,
                color="tab:red",
                label=f"champion (alpha {chosen_alpha:g})",
            )
        bic = next((r for r in rows if r["alpha"] is None), None)
        if bic and bic.get(metric) is not None and bic.get("psnr_y") is not None:
            ax.plot(bic["psnr_y"], bic[metric], "s", color="tab:gray", label="bicubic")
        ax.set_xlabel("PSNR-Y (dB, higher = less distortion)")
        ax.set_ylabel(f"{metric} (lower = better perceptual quality)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Perception-distortion trade-off of network interpolation")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def register_step(
    ctx: StepContext,
    reports: Sequence[Path],
    models: Mapping[float, Path],
    summary_file: Path,
    plot_csv: Path,
    plot_png: Path,
    registered_file: Path,
) -> dict[str, Any]:
    """Select the champion alpha, register its generator (alias), finish the pipeline's parent run."""
    params = ctx.params.registration
    loaded = [json.loads(Path(p).read_text()) for p in reports]
    rows = summarise(loaded)
    chosen = select_alpha(rows, params.selection)
    alpha = chosen["alpha"]
    model_path = next((p for a, p in models.items() if math.isclose(a, alpha)), None)
    if model_path is None:
        raise SelectionError(f"no generator file for the chosen alpha {alpha}")
    write_plot_data(rows, plot_csv)
    draw_plot(rows, alpha, plot_png)
    metrics = {k: v for k, v in chosen.items() if k != "alpha" and v is not None}
    with stage_run(ctx.tracking, "register", ctx.params.section("register")) as run:
        info = log_generator_model(
            model_path, registered_model_name=params.model_name,
            max_input_pixels=params.max_input_pixels, tile=params.serve_tile,
        )  # fmt: skip
        version = str(info.registered_model_version)
        client = MlflowClient()
        client.set_registered_model_alias(params.model_name, params.alias, version)
        client.set_model_version_tag(params.model_name, version, "alpha", f"{alpha:g}")
        for key, value in metrics.items():
            client.set_model_version_tag(params.model_name, version, key, f"{value:.4f}")
        mlflow.log_metrics({f"champion_{k}": float(v) for k, v in metrics.items()})
        mlflow.log_param("champion_alpha", alpha)
        mlflow.log_artifact(str(plot_png))
        mlflow.log_dict({"rows": rows}, "alpha_comparison.json")
        register_run = run.info.run_id
    parent = parent_run_id(ctx.tracking)
    client.log_artifact(parent, str(plot_png))
    client.log_metric(parent, "champion_alpha", alpha)
    for key, value in metrics.items():
        client.log_metric(parent, f"champion_{key}", float(value))
    finish_parent(ctx.tracking)
    summary = {
        "champion": {"alpha": alpha, **metrics},
        "alphas": [r for r in rows if r["alpha"] is not None],
        "bicubic": {k: v for k, v in rows[-1].items() if k != "alpha"},
    }
    write_json(summary_file, summary)
    registered = {
        "model_name": params.model_name, "version": version, "alias": params.alias, "alpha": alpha,
        "model_uri": f"models:/{params.model_name}@{params.alias}", "metrics": metrics,
        "register_run_id": register_run, "pipeline_run_id": parent,
    }  # fmt: skip
    write_json(registered_file, registered)
    return registered
