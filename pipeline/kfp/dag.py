"""The Kubeflow Pipelines DAG: the steps ``dvc repro`` runs, as KFP tasks, compiled to ``pipeline.yaml``.

::

    resolve_params -> extract_patches -> pretrain_psnr -> finetune_gan
        -> ParallelFor(alphas): interpolate -> evaluate
        -> register(Collected models, Collected reports)

Parameters: ``params_json`` (``params.yaml`` without the knobbed keys) and the knobs of
:data:`pipeline.kfp.params.KNOBS`, merged and validated by the first task; the data source
(``data_*``); where checkpoints live (``checkpoint_pvc``, ``checkpoint_root``).

Cluster wiring (ignored by ``esrgan kfp run-local``): GPUs, CPU and memory on the training tasks; retries
with exponential backoff on training (it resumes from checkpoints on the PVC); caching on the cheap
deterministic tasks only; MLflow and S3 settings from Kubernetes secrets, never literals.
"""

import shutil
import tempfile
from pathlib import Path
from typing import Any

from kfp import compiler, dsl, kubernetes
from kfp.dsl.graph_component import GraphComponent

from esrgan.fileio import atomic_write
from pipeline.errors import PipelineError
from pipeline.images import Images
from pipeline.kfp.build import build_components
from pipeline.kfp.params import canonical_json, split_knobs, training_gpus
from pipeline.params import load_params_document

PIPELINE_NAME = "esrgan-pipeline"

#: Secret name -> {secret key: environment variable}. Created as in docs/kubeflow.md.
MLFLOW_SECRET = "esrgan-mlflow"
MLFLOW_SECRET_ENV = {
    "tracking-uri": "MLFLOW_TRACKING_URI",
    "username": "MLFLOW_TRACKING_USERNAME",
    "password": "MLFLOW_TRACKING_PASSWORD",
}
S3_SECRET = "esrgan-s3"
S3_SECRET_ENV = {
    "access-key-id": "AWS_ACCESS_KEY_ID",
    "secret-access-key": "AWS_SECRET_ACCESS_KEY",
    "endpoint-url": "AWS_ENDPOINT_URL",
}
#: MLflow's S3 artifact client reads its own variable for the endpoint (MinIO, SeaweedFS).
S3_SECRET_ENV_MLFLOW = {"endpoint-url": "MLFLOW_S3_ENDPOINT_URL"}

CHECKPOINT_MOUNT = "/mnt/checkpoints"
TRAINING_RESOURCES = {"cpu_request": "4", "cpu_limit": "8", "memory_request": "16G", "memory_limit": "32G"}
RETRY = {"num_retries": 3, "backoff_duration": "120s", "backoff_factor": 2.0, "backoff_max_duration": "3600s"}
EVAL_PARALLELISM = 4  # alphas evaluated at once (CPU pods)

DEFAULT_DATA = {
    "data_source": "dvc",
    "data_uri": "https://github.com/OWNER/esrgan-pipeline.git",
    "data_rev": "main",
    "data_path": "data",
}


def _with_secrets(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """MLflow server and S3 credentials as environment variables, straight from the secrets."""
    kubernetes.use_secret_as_env(task, secret_name=MLFLOW_SECRET, secret_key_to_env=MLFLOW_SECRET_ENV)
    kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env=S3_SECRET_ENV)
    kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env=S3_SECRET_ENV_MLFLOW)
    return task


def _training(task: dsl.PipelineTask, checkpoint_pvc: Any, gpus: Any) -> dsl.PipelineTask:
    """GPUs (the ``training_gpus`` parameter, which the task also receives: ``runtime.processes:
    auto`` starts one rank per GPU the pod gets), CPU/memory, retries, checkpoint volume; never
    cached (it trains, and logs a new run)."""
    r = TRAINING_RESOURCES
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpus)
    task.set_cpu_request(r["cpu_request"]).set_cpu_limit(r["cpu_limit"])
    task.set_memory_request(r["memory_request"]).set_memory_limit(r["memory_limit"])
    task.set_retry(**RETRY)
    task.set_caching_options(enable_caching=False)
    kubernetes.mount_pvc(task, pvc_name=checkpoint_pvc, mount_path=CHECKPOINT_MOUNT)
    return _with_secrets(task)


def default_arguments(params_file: Path) -> dict[str, Any]:
    """Compiled defaults: ``params_file`` split into ``params_json`` and knobs, plus the data source."""
    doc = load_params_document(params_file)  # fail at compile time, not in the cluster
    rest, knobs = split_knobs(doc)
    return {
        "params_json": canonical_json(rest),
        **knobs,
        **DEFAULT_DATA,
        "checkpoint_pvc": "esrgan-checkpoints",
        "checkpoint_root": CHECKPOINT_MOUNT,
        "training_gpus": training_gpus(doc),
    }


def build_pipeline(images: Images, params_file: Path) -> GraphComponent:
    """The pipeline function with its defaults taken from ``params_file``."""
    c = build_components(images)
    d = default_arguments(params_file)

    @dsl.pipeline(name=PIPELINE_NAME, description="ESRGAN: patches, PSNR and GAN training, alpha sweep, registry")
    def esrgan_pipeline(
        params_json: str = d["params_json"],
        # Bare: KFP types the ParallelFor items from it (STRING); list[float] would change the spec.
        alphas: list = d["alphas"],  # type: ignore[type-arg]
        psnr_iterations: int = d["psnr_iterations"],
        gan_iterations: int = d["gan_iterations"],
        device: str = d["device"],
        experiment: str = d["experiment"],
        model_name: str = d["model_name"],
        data_source: str = d["data_source"],
        data_uri: str = d["data_uri"],
        data_rev: str = d["data_rev"],
        data_path: str = d["data_path"],
        checkpoint_pvc: str = d["checkpoint_pvc"],
        checkpoint_root: str = d["checkpoint_root"],
        training_gpus: int = d["training_gpus"],
    ) -> str:
        run_id, run_name = dsl.PIPELINE_JOB_ID_PLACEHOLDER, dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        resolved = (
            c.resolve_params(
                params_json=params_json,
                alphas=alphas,
                psnr_iterations=psnr_iterations,
                gan_iterations=gan_iterations,
                device=device,
                experiment=experiment,
                model_name=model_name,
                data_source=data_source,
                data_uri=data_uri,
                data_rev=data_rev,
                data_path=data_path,
            )
            .set_display_name("resolve parameters")
            .set_caching_options(enable_caching=True)
        )
        config = resolved.outputs["config"]

        extract = c.extract_patches(config=config).set_display_name("extract patches")
        extract.set_caching_options(enable_caching=True).set_cpu_request("2").set_memory_request("4G")
        _with_secrets(extract)

        psnr = c.pretrain_psnr(
            config=config,
            patches=extract.outputs["patches"],
            checkpoint_root=checkpoint_root,
            kfp_run_id=run_id,
            kfp_run_name=run_name,
            gpus=training_gpus,
            checkpoint_pvc=checkpoint_pvc,
        )
        _training(psnr.set_display_name("pretrain PSNR"), checkpoint_pvc, training_gpus)
        gan = c.finetune_gan(
            config=config,
            patches=extract.outputs["patches"],
            psnr_model=psnr.outputs["model"],
            checkpoint_root=checkpoint_root,
            kfp_run_id=run_id,
            kfp_run_name=run_name,
            gpus=training_gpus,
            checkpoint_pvc=checkpoint_pvc,
        )
        _training(gan.set_display_name("fine-tune GAN"), checkpoint_pvc, training_gpus)

        # Loop tasks take only the loop item, pipeline parameters and artifacts (kfp.local passes
        # upstream *parameter* outputs into a ParallelFor wrongly; artifacts work everywhere).
        with dsl.ParallelFor(items=alphas, parallelism=EVAL_PARALLELISM) as alpha:
            interp = c.interpolate(alpha=alpha, psnr_model=psnr.outputs["model"], gan_model=gan.outputs["model"])
            interp.set_display_name("interpolate").set_caching_options(enable_caching=True)
            evaluation = c.evaluate(
                alpha=alpha, config=config, model=interp.outputs["model"], hr_dataset=extract.outputs["hr_dataset"]
            )
            evaluation.set_display_name("evaluate").set_caching_options(enable_caching=True)
            _with_secrets(evaluation.set_cpu_request("2").set_memory_request("8G"))

        reg = c.register(
            config=config,
            models=dsl.Collected(interp.outputs["model"]),
            reports=dsl.Collected(evaluation.outputs["report"]),
            kfp_run_id=run_id,
            kfp_run_name=run_name,
        )
        _with_secrets(reg.set_display_name("select and register").set_caching_options(enable_caching=False))
        # A task output channel: to KFP, `-> str` declares the output parameter, not a Python type.
        return reg.outputs["Output"]  # type: ignore[no-any-return]

    return esrgan_pipeline


class PackagePathError(PipelineError, ValueError):
    """``esrgan kfp compile -o`` names a path the package cannot be written to; nothing was written."""


def compile_pipeline(out: Path, params_file: Path, images: Images) -> Path:
    """Write the compiled pipeline (deterministic for the same inputs, so it can be committed).

    The write is atomic: the package is compiled into a temporary folder, then renamed over
    ``out``, so a failure at any point leaves an existing ``out`` as it was.

    Raises:
        PackagePathError: ``out`` is a folder or does not end with ``.yaml``/``.yml`` (KFP writes
            JSON only for pipelines without platform settings, and this one has them).
    """
    if out.suffix not in (".yaml", ".yml"):
        raise PackagePathError(f"{out}: the pipeline package must be a .yaml (or .yml) file")
    if out.is_dir():
        raise PackagePathError(f"{out} is a folder: give the path of the .yaml file to write")
    pipeline = build_pipeline(images, params_file)
    with tempfile.TemporaryDirectory(prefix="esrgan-kfp-compile-") as tmp:
        staged = Path(tmp) / out.name
        compiler.Compiler().compile(pipeline, package_path=str(staged))
        atomic_write(out, lambda dest: shutil.copyfile(staged, dest))
    return out
