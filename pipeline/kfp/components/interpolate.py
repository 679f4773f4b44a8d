"""Component 4: one interpolated generator per alpha (inside the ParallelFor)."""

from kfp.dsl import Input, Model, Output


def interpolate(alpha: float, psnr_model: Input[Model], gan_model: Input[Model], model: Output[Model]) -> None:
    """``(1 - alpha) * PSNR + alpha * GAN``; ``alpha`` is kept in the artifact's metadata for selection."""
    from pathlib import Path

    from pipeline.kfp.components.runtime import GENERATOR_FILE, generator_file
    from pipeline.steps.interpolate import interpolate_step

    interpolate_step(
        Path(psnr_model.path) / GENERATOR_FILE, Path(gan_model.path) / GENERATOR_FILE, alpha, generator_file(model.path)
    )
    model.metadata["alpha"] = alpha
