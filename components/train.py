"""Components 2 and 3: PSNR pretraining and GAN fine-tuning (GPU, retried, resumable).

Checkpoints go to ``<checkpoint_root>/<pipeline key>/<stage>`` rather than into an output
artifact: a retried pod gets fresh, empty output paths, but the same persistent volume and the
same key, so the step resumes from its latest checkpoint (and its fingerprint check discards
checkpoints of another configuration).
"""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def pretrain_psnr(
    config: Input[Artifact],
    patches: Input[Dataset],
    checkpoint_root: str,
    kfp_run_id: str,
    kfp_run_name: str,
    model: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """Stage 1: the L1 (PSNR-oriented) generator."""
    from pathlib import Path

    from components.runtime import generator_file, log_metrics, training_task
    from pipeline.steps import pretrain_psnr_step

    tags = {"kfp.run_id": kfp_run_id, "kfp.run_name": kfp_run_name}
    with training_task(config.path, checkpoint_root, "pretrain_psnr", tags) as (ctx, run_dir, metrics_file):
        result = pretrain_psnr_step(ctx, Path(patches.path), run_dir, generator_file(model.path), metrics_file)
    log_metrics(metrics, result)


def finetune_gan(
    config: Input[Artifact],
    patches: Input[Dataset],
    psnr_model: Input[Model],
    checkpoint_root: str,
    kfp_run_id: str,
    kfp_run_name: str,
    model: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """Stage 2: perceptual + RaGAN + L1, initialised from the PSNR generator."""
    from pathlib import Path

    from components.runtime import GENERATOR_FILE, generator_file, log_metrics, training_task
    from pipeline.steps import finetune_gan_step

    tags = {"kfp.run_id": kfp_run_id, "kfp.run_name": kfp_run_name}
    with training_task(config.path, checkpoint_root, "finetune_gan", tags) as (ctx, run_dir, metrics_file):
        init = Path(psnr_model.path) / GENERATOR_FILE
        result = finetune_gan_step(ctx, Path(patches.path), init, run_dir, generator_file(model.path), metrics_file)
    log_metrics(metrics, result)
