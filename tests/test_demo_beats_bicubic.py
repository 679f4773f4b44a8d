"""The CPU demo profile's PSNR-oriented model beats MATLAB bicubic on the sample validation split.

Runs stage 1 exactly as params.yaml configures it (a few CPU minutes) on the real sample
photographs: the claim the README makes about the demo.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.params import load_params

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_demo_psnr_model_beats_bicubic(tmp_path: Path) -> None:
    from esrgan.data import build_sample_dataset, extract_validation, extract_with_config
    from esrgan.evaluation import evaluate_folder
    from esrgan.models import load_generator
    from esrgan.training import train_psnr

    params = load_params(ROOT / "params.yaml")
    data, patches = tmp_path / "data", tmp_path / "patches"
    build_sample_dataset(data)
    extract_with_config(data / "train", patches / "train", params.extract_patches)
    extract_validation(data / "val", patches / "val", scale=params.model.scale)
    config = params.train_config().model_copy(deep=True)
    config.logging.progress_bar = False
    result = train_psnr(config, patches / "train" / "hr", patches / "train" / "lr",
                        patches / "val" / "hr", patches / "val" / "lr", tmp_path / "run")  # fmt: skip
    assert result.iterations == params.pretrain_psnr.iterations
    # The evaluation the pipeline runs: whole validation images, Y channel, border = scale.
    report = evaluate_folder(load_generator(result.final_generator_path), data / "val",
                             metrics=("psnr_y", "ssim_y"), progress=False)  # fmt: skip
    model, bicubic = report["model"]["mean"], report["bicubic"]["mean"]
    assert model["psnr_y"] > bicubic["psnr_y"], (model, bicubic)
    assert model["ssim_y"] > bicubic["ssim_y"], (model, bicubic)
