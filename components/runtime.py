"""What the KFP component bodies share: the resolved configuration artifact and KFP metrics.

The first task writes one JSON *config* artifact (validated params, pipeline key, data source);
every later task opens it here, which also adopts the execution's MLflow parent run. Kept out of
the component bodies so that each body stays a few lines calling its step function.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from esrgan.fileio import write_json
from pipeline.params import PipelineParams, parse_params
from pipeline.steps.context import StepContext
from pipeline.steps.pipeline_run import adopt_parent_run

#: A ``Model`` artifact is a folder holding this file: the generator loaders read the format from
#: the suffix, and KFP artifact paths have none.
GENERATOR_FILE = "generator.pth"


def project_version() -> str:
    """The installed package version: the image tag's prefix and part of the pipeline key."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("esrgan-pipeline")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "0.0.0"


def write_config(path: str | Path, params: PipelineParams, key: str, data: Mapping[str, Any]) -> Path:
    """The config artifact: ``{"params": <params.yaml document>, "key": ..., "data": {...}}``."""
    from pipeline.kfp_params import params_document

    return write_json(path, {"params": params_document(params), "key": key, "data": dict(data)})


def read_config(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def open_step(config_path: str | Path, tags: Mapping[str, str] | None = None) -> tuple[StepContext, dict[str, Any]]:
    """Validated params and MLflow for one task, nested under this execution's parent run.

    The project root is the working directory: the image's ``WORKDIR`` in a cluster, the caller's
    directory with ``esrgan kfp run-local``. MLflow comes from ``MLFLOW_TRACKING_URI`` (a secret in a cluster).
    """
    config = read_config(config_path)
    ctx = StepContext.from_params(Path.cwd(), parse_params(config["params"], "config artifact"))
    adopt_parent_run(ctx, config["key"], {k: v for k, v in (tags or {}).items() if v})
    return ctx, config


#: The two training tasks and their step functions' stage names.
TRAINING_STAGES = ("pretrain_psnr", "finetune_gan")


def run_training(
    step: Callable[..., dict[str, Any]],
    config_path: str | Path,
    patches: str | Path,
    init: str | Path | None,
    checkpoint_root: str,
    tags: Mapping[str, str],
    model_dir: str | Path,
    gpus: int = 1,
    checkpoint_pvc: str = "esrgan-checkpoints",
) -> dict[str, Any]:
    """A training task's body: ``step`` (``pretrain_psnr_step`` or ``finetune_gan_step``) in one
    or more processes; returns the step's metrics.

    ``runtime.nodes`` > 1: a Kubeflow TrainJob of that many pods does the work
    (:func:`pipeline.trainjob.run_trainjob`); else this pod trains, as ``runtime.processes`` ranks
    under torchrun when that is more than one (``auto``: the GPUs Kubernetes gave the pod,
    ``gpus``), each rank running :func:`train_task` through ``esrgan kfp train-task``.
    """
    from pipeline.torchrun import launch, stage_processes

    stage = step.__name__.removesuffix("_step")
    config = read_config(config_path)
    params = parse_params(config["params"], "config artifact")
    run_dir = Path(checkpoint_root) / config["key"] / stage
    model_out = generator_file(model_dir)
    if params.runtime.nodes > 1:
        from pipeline.trainjob import run_trainjob

        return run_trainjob(stage, config_path, patches, init, run_dir, model_out, tags, params, gpus, checkpoint_pvc)
    count = stage_processes(params)
    with tempfile.TemporaryDirectory() as tmp:
        metrics_file = Path(tmp) / "metrics.json"
        if count == 1:
            return train_task(stage, config_path, patches, init, run_dir, model_out, metrics_file, tags)
        argv = train_task_arguments(stage, config_path, patches, init, run_dir, model_out, metrics_file, tags)
        status = launch(["pipeline.cli", "kfp", "train-task", *argv], count, stage)
        if status:
            raise SystemExit(status)  # the launch printed why; a non-zero exit fails (and retries) the task
        return dict(json.loads(metrics_file.read_text(encoding="utf-8")))


def train_task_arguments(
    stage: str,
    config_path: str | Path,
    patches: str | Path,
    init: str | Path | None,
    run_dir: Path,
    model_out: Path,
    metrics_file: Path,
    tags: Mapping[str, str],
) -> list[str]:
    """The arguments of ``esrgan kfp train-task`` (what every rank, in this pod or a TrainJob, runs)."""
    argv = ["--stage", stage, "--config", str(config_path), "--patches", str(patches)]
    argv += ["--run-dir", str(run_dir), "--model-out", str(model_out), "--metrics", str(metrics_file)]
    if init is not None:
        argv += ["--init", str(init)]
    for key, value in tags.items():
        argv += ["--tag", f"{key}={value}"]
    return argv


def train_task(
    stage: str,
    config_path: str | Path,
    patches: str | Path,
    init: str | Path | None,
    run_dir: Path,
    model_out: Path,
    metrics_file: Path,
    tags: Mapping[str, str],
) -> dict[str, Any]:
    """One process of a training task: rank 0 (or the only process) adopts the execution's MLflow
    parent run and tracks; other ranks read the parameters only and train (see pipeline.steps.train)."""
    from esrgan.training.distributed import launched_rank
    from pipeline.steps import finetune_gan_step, pretrain_psnr_step

    if stage not in TRAINING_STAGES:
        raise ValueError(f"stage must be one of {TRAINING_STAGES}, got {stage!r}")
    if launched_rank() == 0:
        ctx, _ = open_step(config_path, tags)
    else:  # no MLflow: only rank 0 tracks (and N ranks creating one SQLite store at once would race)
        params = parse_params(read_config(config_path)["params"], "config artifact")
        ctx = StepContext(root=Path.cwd().resolve(), params=params, tracking=None)  # type: ignore[arg-type]
    if stage == "pretrain_psnr":
        return pretrain_psnr_step(ctx, Path(patches), run_dir, model_out, metrics_file)
    if init is None:
        raise ValueError("the finetune_gan task needs the PSNR generator (init)")
    return finetune_gan_step(ctx, Path(patches), Path(init), run_dir, model_out, metrics_file)


def generator_file(artifact_path: str | Path) -> Path:
    """The generator inside a ``Model`` artifact folder (created for outputs)."""
    folder = Path(artifact_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / GENERATOR_FILE


def log_metrics(artifact: Any, metrics: Mapping[str, Any], prefix: str = "") -> None:
    """Numbers of a step's metrics dict into a KFP ``Metrics`` artifact (``None``/text skipped)."""
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        artifact.log_metric(f"{prefix}{key}", float(value))
