"""What the two training stages share: input checks, the run folder's fingerprint (fresh or
resume), the init weights, the MLflow stage run and the files a stage writes.

The stages themselves are :mod:`pipeline.steps.pretrain_psnr` and :mod:`pipeline.steps.finetune_gan`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import mlflow
from mlflow.tracking import MlflowClient

from esrgan.training import TrainResult, train
from esrgan.training.config import STAGE_SECTIONS
from esrgan.training.distributed import launched_rank
from pipeline.errors import StageInputError
from pipeline.registry.tracking import MlflowCallbacks, parent_run_id, stage_run
from pipeline.steps.context import StepContext

if TYPE_CHECKING:
    from pipeline.data.init_sources import StageInit


def _finish(result: TrainResult, model_out: Path, metrics_file: Path) -> dict[str, Any]:
    from esrgan.fileio import atomic_write, write_json

    atomic_write(model_out, lambda tmp: shutil.copyfile(result.final_generator_path, tmp))
    metrics = {k: float(v) for k, v in result.metrics.items()}
    metrics.update(iterations=float(result.iterations), wall_time_s=round(result.wall_time_s, 2))
    mlflow.log_metrics({f"final_{k}": v for k, v in metrics.items()})
    mlflow.log_artifact(str(model_out), artifact_path="generator")
    if result.backbone:
        mlflow.log_dict(result.backbone, "perceptual_backbone.json")
    write_json(metrics_file, metrics)
    return metrics


#: Written into every run folder; before the ownership marker, its presence proved the folder ours.
FINGERPRINT_FILE = "fingerprint.json"


def _fresh_or_resumable(run_dir: Path, fingerprint: dict[str, Any]) -> bool:
    """Keep ``run_dir``'s checkpoints only if they come from this exact configuration and input.

    DVC re-runs a stage when its params or inputs changed; checkpoints of the previous
    configuration must then not be resumed. A run killed mid-way (same fingerprint) resumes.
    Only a folder esrgan created is emptied (:mod:`esrgan.owned_folders`): a folder holding
    someone else's files is refused, untouched. Call it only after :func:`check_training_inputs`
    passed. Returns whether previous checkpoints were discarded.

    Raises:
        NotOwnedError: ``run_dir`` holds files esrgan did not write; nothing was deleted.
    """
    import hashlib
    import json

    from esrgan.fileio import write_json
    from esrgan.owned_folders import MARKER, claim, reset

    # Plain JSON first: what is hashed is exactly what the marker records, and writing the marker
    # cannot fail on a value's type after the folder is emptied.
    inputs = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    marker = run_dir / FINGERPRINT_FILE
    try:
        previous = json.loads(marker.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        previous = None
    purpose = "run folder (--run-dir)"
    if previous == digest:
        claim(run_dir, purpose, legacy_markers=(FINGERPRINT_FILE,))
        discarded = False
    else:
        discarded = run_dir.is_dir() and any(p.name != MARKER for p in run_dir.iterdir())
        reset(run_dir, purpose, legacy_markers=(FINGERPRINT_FILE,))
    write_json(marker, {"sha256": digest, "inputs": inputs})
    return discarded


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_run_folder(run_dir: Path, inputs: dict[str, Path | None], outputs: dict[str, Path]) -> list[str]:
    """Problems with ``run_dir`` that would make emptying it destroy an input or an output."""
    problems = []
    for what, path in inputs.items():
        if path is not None and (_inside(path, run_dir) or _inside(run_dir, path)):
            problems.append(f"{run_dir}: the run folder overlaps the {what} {path}; give a folder of its own")
    for what, path in outputs.items():
        if _inside(run_dir, path):
            problems.append(f"{run_dir}: the run folder lies inside the {what} {path}")
    return problems


def check_training_inputs(
    ctx: StepContext,
    patches_dir: Path,
    init: Path | None,
    run_dir: Path | None = None,
    outputs: dict[str, Path] | None = None,
    stage: Literal["psnr", "gan"] = "psnr",
) -> None:
    """Refuse inputs that cannot train this configuration, before anything is written or deleted.

    Everything that can fail at the start of training is checked here, so that a refused run
    leaves the previous run folder as it was: the device, the patches, the initial generator, the
    GAN stage's perceptual backbone, and a run folder that overlaps an input or an output.

    Raises:
        StageInputError: every problem, one line each.
    """
    import json

    from esrgan.devices import DeviceError, resolve_device

    problems = []
    try:
        resolve_device(ctx.params.runtime.device)
    except DeviceError as exc:
        problems.append(f"runtime.device: {exc}")
    for sub in ("train/hr", "train/lr", "val/hr", "val/lr"):
        folder = patches_dir / sub
        if not folder.is_dir() or not any(folder.iterdir()):
            problems.append(f"{folder}: missing or empty (run the extract_patches stage first)")
    summary = patches_dir / "train" / "summary.json"
    scale = ctx.params.model.scale
    try:
        cut_for = json.loads(summary.read_text())["config"]["scale"]
    except (OSError, ValueError, KeyError, TypeError):
        cut_for = None  # reported above when the folders are missing; older summaries lack it
    if cut_for is not None and cut_for != scale:
        problems.append(f"{summary}: patches were cut for scale {cut_for} but model.scale is {scale}")
    if init is not None:
        from esrgan.models import CheckpointError, load_generator

        try:
            config = load_generator(init).config
        except CheckpointError as exc:
            problems.append(str(exc))
        else:
            wanted = ctx.params.model.model_dump()
            diff = {k: (config.get(k), v) for k, v in wanted.items() if k in config and config[k] != v}
            if diff:
                problems.append(
                    f"{init}: generator does not match params.yaml's model ("
                    + ", ".join(f"{k} {have} in the file, {want} in params" for k, (have, want) in diff.items())
                    + ")"
                )
    if run_dir is not None:
        problems += check_run_folder(run_dir, {"patches folder": patches_dir, "initial generator": init}, outputs or {})
    if stage == "gan":
        from esrgan.feature_extractor import BackboneUnavailableError, build_feature_extractor

        perceptual = ctx.params.finetune_gan.perceptual
        try:
            build_feature_extractor(
                perceptual.backbone, list(perceptual.layers or []) or None, perceptual.allow_download
            )
        except (BackboneUnavailableError, ValueError) as exc:
            problems.append(f"finetune_gan.perceptual: {str(exc).splitlines()[0]}")
    if problems:
        raise StageInputError(problems)


def _input_fingerprint(
    ctx: StepContext, stage_section: str, patches_dir: Path, init: Path | None, init_discriminator: Path | None = None
) -> dict[str, Any]:
    """What makes checkpoints resumable: the stage's own settings and inputs (not logging, not the other stage)."""
    from esrgan.data.layout import sha256_file as file_hash

    summary = patches_dir / "train" / "summary.json"
    fingerprint = {
        "stage": stage_section,
        "config": _sections(ctx, stage_section),
        "patches": file_hash(summary) if summary.is_file() else None,
        "init": file_hash(init) if init is not None else None,
    }
    if init_discriminator is not None:
        fingerprint["init_discriminator"] = file_hash(init_discriminator)
    return fingerprint


@contextmanager
def _stage_init(ctx: StepContext, section: str, init_dir: Path | None) -> Iterator[StageInit]:
    """The stage's resolved ``init`` sources: read from ``init_dir`` (the resolve_init stage wrote
    it), else resolved here into a temporary folder (a KFP pod fetches its sources itself)."""
    from pipeline.data.init_sources import StageInit, read_stage_init, resolve_stage_init, sources_of

    if init_dir is not None:
        yield read_stage_init(init_dir)
    elif not sources_of(ctx.params, section):
        yield StageInit(None, None, {})
    else:
        with tempfile.TemporaryDirectory() as tmp:
            resolve_stage_init(ctx.params, section, Path(tmp), ctx.root)
            yield read_stage_init(Path(tmp))


def _sections(ctx: StepContext, stage_section: str) -> dict[str, Any]:
    from pipeline.params import LAUNCH_KEYS

    # Not runtime.processes/nodes: checkpoints mean the same for any number of ranks (global batch).
    runtime = {k: v for k, v in ctx.params.section("runtime").items() if k not in LAUNCH_KEYS}
    return {"model": ctx.params.section("model"), stage_section: ctx.params.section(stage_section), "runtime": runtime}


def train_stage(
    ctx: StepContext,
    stage: Literal["psnr", "gan"],
    patches_dir: Path,
    init: Path | None,
    run_dir: Path,
    model_out: Path,
    metrics_file: Path,
    resume: bool,
    init_dir: Path | None = None,
) -> dict[str, Any]:
    """Both stages: check the inputs, start fresh or resume, train in the stage's MLflow run.

    ``init`` is the generator the stage starts from unless its ``init.generator`` source is set
    (the GAN stage: the PSNR model); ``init_dir`` holds the resolved sources (see :func:`_stage_init`).
    """
    section = STAGE_SECTIONS[stage]
    outputs = {"model output": model_out, "metrics file": metrics_file}
    with _stage_init(ctx, section, init_dir) as sources:
        generator = sources.generator or init
        check_training_inputs(ctx, patches_dir, generator, run_dir, outputs, stage)
        # Under torchrun only rank 0 resets the run folder, tracks and writes outputs; the other
        # ranks join it in train() (whose process-group rendezvous waits for rank 0's reset).
        main_rank = launched_rank() == 0
        if main_rank:
            _fresh_or_resumable(
                run_dir, _input_fingerprint(ctx, section, patches_dir, generator, sources.discriminator)
            )
        train_dir, val_dir = patches_dir / "train", patches_dir / "val"
        # Explicit files take precedence over the config's sources in train(), and are read as
        # they are: the sources were resolved (and param_key applied) by resolve_stage_init.
        config = ctx.params.train_config()

        def run_training(callbacks: MlflowCallbacks | None) -> TrainResult:
            return train(
                stage,
                config,
                train_dir / "hr",
                train_dir / "lr",
                val_dir / "hr",
                val_dir / "lr",
                run_dir,
                init_generator=generator,
                init_discriminator=sources.discriminator,
                resume=resume,
                callbacks=callbacks,
            )

        if not main_rank:
            run_training(None)
            return {}
        with stage_run(ctx.tracking, section, _sections(ctx, section)):
            lineage = sources.tags(section)
            if lineage:  # where training started: on the stage's run and the pipeline's parent run
                mlflow.set_tags(lineage)
                parent = parent_run_id(ctx.tracking)
                for key, value in lineage.items():
                    MlflowClient().set_tag(parent, key, value)
            return _finish(run_training(MlflowCallbacks()), model_out, metrics_file)
