"""A KFP training task: one stage (``pretrain_psnr`` or ``finetune_gan``) in this pod's processes or
in a multi-node TrainJob.

:class:`TrainTask` is what every process of the task needs (``esrgan kfp train-task`` arguments);
:func:`run_training` is the training components' body.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.kfp.components.runtime import generator_file, open_step, read_config
from pipeline.params import parse_params
from pipeline.steps.context import StepContext

#: The two training tasks and their step functions' stage names.
TRAINING_STAGES = ("pretrain_psnr", "finetune_gan")


@dataclass(frozen=True)
class TrainTask:
    """One training task's inputs and outputs, as every rank (in this pod or a TrainJob's) gets them."""

    stage: str
    config_path: Path
    patches: Path
    init: Path | None
    run_dir: Path
    model_out: Path
    metrics_file: Path
    tags: Mapping[str, str] = field(default_factory=dict)

    def arguments(self) -> list[str]:
        """The arguments of ``esrgan kfp train-task`` that rebuild this task in another process."""
        argv = ["--stage", self.stage, "--config", str(self.config_path), "--patches", str(self.patches)]
        argv += ["--run-dir", str(self.run_dir), "--model-out", str(self.model_out)]
        argv += ["--metrics", str(self.metrics_file)]
        if self.init is not None:
            argv += ["--init", str(self.init)]
        for key, value in self.tags.items():
            argv += ["--tag", f"{key}={value}"]
        return argv

    def run(self) -> dict[str, Any]:
        """One process of the task: rank 0 (or the only process) adopts the execution's MLflow parent
        run and tracks; other ranks read the parameters only and train (see :mod:`pipeline.steps.training`)."""
        from esrgan.training.distributed import launched_rank
        from pipeline.steps.finetune_gan import finetune_gan_step
        from pipeline.steps.pretrain_psnr import pretrain_psnr_step

        if self.stage not in TRAINING_STAGES:
            raise ValueError(f"stage must be one of {TRAINING_STAGES}, got {self.stage!r}")
        if launched_rank() == 0:
            ctx, _ = open_step(self.config_path, self.tags)
        else:  # no MLflow: only rank 0 tracks (and N ranks creating one SQLite store at once would race)
            params = parse_params(read_config(self.config_path)["params"], "config artifact")
            ctx = StepContext.untracked(Path.cwd(), params)
        if self.stage == "pretrain_psnr":
            return pretrain_psnr_step(ctx, self.patches, self.run_dir, self.model_out, self.metrics_file)
        if self.init is None:
            raise ValueError("the finetune_gan task needs the PSNR generator (init)")
        return finetune_gan_step(ctx, self.patches, self.init, self.run_dir, self.model_out, self.metrics_file)


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
    (:func:`pipeline.kfp.trainjob.run_trainjob`); else this pod trains, as ``runtime.processes`` ranks
    under torchrun when that is more than one (``auto``: the GPUs Kubernetes gave the pod,
    ``gpus``), each rank running :meth:`TrainTask.run` through ``esrgan kfp train-task``.
    """
    from pipeline.torchrun import launch, stage_processes

    stage = step.__name__.removesuffix("_step")
    config = read_config(config_path)
    params = parse_params(config["params"], "config artifact")
    run_dir = Path(checkpoint_root) / config["key"] / stage
    model_out = generator_file(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        task = TrainTask(
            stage, Path(config_path), Path(patches), _path(init), run_dir, model_out, Path(tmp) / "metrics.json", tags
        )
        if params.runtime.nodes > 1:
            from pipeline.kfp.trainjob import run_trainjob

            return run_trainjob(task, params, gpus, checkpoint_pvc)
        count = stage_processes(params)
        if count == 1:
            return task.run()
        status = launch(["pipeline.cli", "kfp", "train-task", *task.arguments()], count, stage)
        if status:
            raise SystemExit(status)  # the launch printed why; a non-zero exit fails (and retries) the task
        return dict(json.loads(task.metrics_file.read_text(encoding="utf-8")))


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)
