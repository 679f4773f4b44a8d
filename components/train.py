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
    import tempfile
    from pathlib import Path

    from components.runtime import generator_file, log_metrics, open_step
    from pipeline.steps import pretrain_psnr_step

    ctx, config_data = open_step(config.path, {"kfp.run_id": kfp_run_id, "kfp.run_name": kfp_run_name})
    run_dir = Path(checkpoint_root) / config_data["key"] / "pretrain_psnr"
    with tempfile.TemporaryDirectory() as tmp:
        result = pretrain_psnr_step(
            ctx, Path(patches.path), run_dir, generator_file(model.path), Path(tmp) / "metrics.json", resume=True
        )
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
    import tempfile
    from pathlib import Path

    from components.runtime import GENERATOR_FILE, generator_file, log_metrics, open_step
    from pipeline.steps import finetune_gan_step

    ctx, config_data = open_step(config.path, {"kfp.run_id": kfp_run_id, "kfp.run_name": kfp_run_name})
    run_dir = Path(checkpoint_root) / config_data["key"] / "finetune_gan"
    with tempfile.TemporaryDirectory() as tmp:
        result = finetune_gan_step(
            ctx,
            Path(patches.path),
            Path(psnr_model.path) / GENERATOR_FILE,
            run_dir,
            generator_file(model.path),
            Path(tmp) / "metrics.json",
            resume=True,
        )
    log_metrics(metrics, result)
