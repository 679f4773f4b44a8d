"""Component 2: PSNR-oriented pretraining (GPU, retried, resumable).

Checkpoints go to ``<checkpoint_root>/<pipeline key>/<stage>`` rather than into an output
artifact: a retried pod gets fresh, empty output paths, but the same persistent volume and the
same key, so the step resumes from its latest checkpoint (and its fingerprint check discards
checkpoints of another configuration).

``gpus`` is the pipeline parameter that also sets the task's GPU limit, so ``runtime.processes:
auto`` (one rank per visible GPU) and the request agree by construction; ``runtime.nodes`` > 1
makes the task submit a Kubeflow TrainJob instead, on the same volume (``checkpoint_pvc``):
docs/distributed-training.md.
"""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def pretrain_psnr(
    config: Input[Artifact],
    patches: Input[Dataset],
    checkpoint_root: str,
    kfp_run_id: str,
    kfp_run_name: str,
    gpus: int,
    checkpoint_pvc: str,
    model: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """Stage 1: the L1 (PSNR-oriented) generator."""
    from pipeline.kfp.components.runtime import log_metrics
    from pipeline.kfp.train_task import run_training
    from pipeline.steps.pretrain_psnr import pretrain_psnr_step

    tags = {"kfp.run_id": kfp_run_id, "kfp.run_name": kfp_run_name}
    result = run_training(
        pretrain_psnr_step, config.path, patches.path, None, checkpoint_root, tags, model.path, gpus, checkpoint_pvc
    )
    log_metrics(metrics, result)
