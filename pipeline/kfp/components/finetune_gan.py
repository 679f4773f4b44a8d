"""Component 3: RaGAN fine-tuning initialised from the PSNR generator (GPU, retried, resumable).

Checkpoints and the number of GPUs as in :mod:`pipeline.kfp.components.pretrain_psnr`.
"""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def finetune_gan(
    config: Input[Artifact],
    patches: Input[Dataset],
    psnr_model: Input[Model],
    checkpoint_root: str,
    kfp_run_id: str,
    kfp_run_name: str,
    gpus: int,
    checkpoint_pvc: str,
    model: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """Stage 2: perceptual + RaGAN + L1, initialised from the PSNR generator."""
    from pathlib import Path

    from pipeline.kfp.components.runtime import GENERATOR_FILE, log_metrics
    from pipeline.kfp.train_task import run_training
    from pipeline.steps.finetune_gan import finetune_gan_step

    tags = {"kfp.run_id": kfp_run_id, "kfp.run_name": kfp_run_name}
    init = Path(psnr_model.path) / GENERATOR_FILE
    result = run_training(
        finetune_gan_step, config.path, patches.path, init, checkpoint_root, tags, model.path, gpus, checkpoint_pvc
    )
    log_metrics(metrics, result)
