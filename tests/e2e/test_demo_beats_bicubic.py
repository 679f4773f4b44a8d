"""The CPU demo profile's PSNR-oriented model beats MATLAB bicubic on the sample validation split.

Uses stage 1 trained exactly as params.yaml configures it (the session's shared demo training,
a few CPU minutes) on the real sample photographs: the claim the README makes about the demo.
"""

from __future__ import annotations

import pytest

from tests.demo_training import DemoTraining

pytestmark = pytest.mark.slow


def test_demo_psnr_model_beats_bicubic(demo_training: DemoTraining) -> None:
    from esrgan.evaluation import evaluate_folder
    from esrgan.models import load_generator

    assert demo_training.psnr_iterations == demo_training.params.pretrain_psnr.iterations
    # The evaluation the pipeline runs: whole validation images, Y channel, border = scale.
    report = evaluate_folder(
        load_generator(demo_training.psnr_model),
        demo_training.data / "val",
        metrics=("psnr_y", "ssim_y"),
        progress=False,
    )
    model, bicubic = report["model"]["mean"], report["bicubic"]["mean"]
    assert model["psnr_y"] > bicubic["psnr_y"], (model, bicubic)
    assert model["ssim_y"] > bicubic["ssim_y"], (model, bicubic)
