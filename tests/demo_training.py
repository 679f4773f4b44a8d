"""The CPU demo trained once per test session, exactly as params.yaml configures it (not a test module).

Both demo tests (PSNR model beats bicubic; the GAN stage earns its place) need the same few CPU
minutes of training, so the first one to ask trains both stages and the other reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.params import PipelineParams, load_params

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DemoTraining:
    params: PipelineParams
    data: Path  #: the sample HR set (train/, val/)
    psnr_model: Path
    gan_model: Path
    psnr_iterations: int
    gan_iterations: int


def train_demo(root: Path) -> DemoTraining:
    """Sample data, patches, then stage 1 and stage 2 with the project's params.yaml."""
    from esrgan.data import build_sample_dataset, extract_validation, extract_with_config
    from esrgan.training import train_gan, train_psnr

    params = load_params(ROOT / "params.yaml")
    data, patches = root / "data", root / "patches"
    build_sample_dataset(data)
    extract_with_config(data / "train", patches / "train", params.extract_patches)
    extract_validation(data / "val", patches / "val", scale=params.model.scale)
    config = params.train_config().model_copy(deep=True)
    config.logging.progress_bar = False
    pairs = (patches / "train" / "hr", patches / "train" / "lr", patches / "val" / "hr", patches / "val" / "lr")
    psnr = train_psnr(config, *pairs, root / "psnr")
    gan = train_gan(config, *pairs, root / "gan", init_generator=psnr.final_generator_path)
    return DemoTraining(
        params, data, psnr.final_generator_path, gan.final_generator_path, psnr.iterations, gan.iterations
    )
