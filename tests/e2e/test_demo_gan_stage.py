"""The CPU demo's GAN stage: perceptual gain without a colour shift, and a pick that is not alpha 0.

Uses both stages trained exactly as params.yaml configures them (the session's shared demo
training) and the evaluation the pipeline runs on the sample validation photos:

* the GAN model (alpha 1) has a NIQE at least 0.5 below the PSNR model's, is no farther from HR
  by ST-LPIPS (alex), and keeps colour: mean |dCb| and |dCr| against HR at most 1.5x the PSNR
  model's (before the fix: 4x);
* the pipeline's selection rule picks a GAN-influenced generator (alpha > 0) with a NIQE at
  least 0.3 below the PSNR model's for at most 2 dB of PSNR-Y;
* and that pick keeps both on nine held-out photos (``esrgan.data.build_holdout_set``)
  that no training, validation or tuning decision has seen.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from tests.demo_training import DemoTraining

pytestmark = pytest.mark.slow

METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "chroma_error", "niqe", "stlpips_alex")


def _chroma_channels(generator: nn.Module, hr_dir: Path, scale: int) -> np.ndarray:
    """Mean |dCb|, |dCr| against HR over the folder's images (the evaluation's conventions)."""
    from esrgan.data import imresize, mod_crop
    from esrgan.imageio import read_image
    from esrgan.inference import upscale
    from esrgan.metrics import rgb_to_cbcr

    per_image = []
    for path in sorted(hr_dir.iterdir()):
        hr = mod_crop(read_image(path)[..., :3], scale)
        sr = upscale(generator, imresize(hr, 1 / scale))
        diff = rgb_to_cbcr(sr[scale:-scale, scale:-scale]) - rgb_to_cbcr(hr[scale:-scale, scale:-scale])
        per_image.append(np.abs(diff).mean(axis=(0, 1)))
    return np.mean(per_image, axis=0)


@pytest.fixture(scope="module")
def sweep(demo_training: DemoTraining) -> dict[float, dict]:
    from esrgan.evaluation import evaluate_folder
    from esrgan.models import interpolate, load_generator

    psnr, gan = load_generator(demo_training.psnr_model), load_generator(demo_training.gan_model)
    reports = {}
    for alpha in demo_training.params.interpolate.alphas:
        model = copy.deepcopy(psnr)
        model.load_state_dict(interpolate(psnr.state_dict(), gan.state_dict(), alpha))
        report = evaluate_folder(model.eval(), demo_training.data / "val", metrics=METRICS, progress=False)
        reports[alpha] = {**report, "alpha": alpha, "generator": model}
    return reports


def test_gan_model_is_perceptually_closer_without_a_colour_cast(
    demo_training: DemoTraining, sweep: dict[float, dict]
) -> None:
    psnr, gan = sweep[0.0]["model"]["mean"], sweep[1.0]["model"]["mean"]
    assert gan["niqe"] <= psnr["niqe"] - 0.5, (gan, psnr)
    assert gan["stlpips_alex"] <= psnr["stlpips_alex"], (gan, psnr)
    scale = demo_training.params.model.scale
    val = demo_training.data / "val"
    psnr_cbcr = _chroma_channels(sweep[0.0]["generator"], val, scale)
    gan_cbcr = _chroma_channels(sweep[1.0]["generator"], val, scale)
    assert (gan_cbcr <= 1.5 * psnr_cbcr).all(), (gan_cbcr, psnr_cbcr)
    assert gan["chroma_error"] == pytest.approx(float(gan_cbcr.mean()), rel=1e-9)


def _pick(demo_training: DemoTraining, sweep: dict[float, dict]) -> dict:
    from pipeline.steps.selection import pick_alpha, summarise

    rows = summarise([{k: v for k, v in r.items() if k != "generator"} for r in sweep.values()])
    return pick_alpha(rows, demo_training.params.registration.selection)


def test_the_pick_is_a_real_interpolation(demo_training: DemoTraining, sweep: dict[float, dict]) -> None:
    pick = _pick(demo_training, sweep)
    psnr = sweep[0.0]["model"]["mean"]
    assert pick["alpha"] > 0, pick
    assert pick["niqe"] <= psnr["niqe"] - 0.3, (pick, psnr)
    assert pick["stlpips_alex"] < psnr["stlpips_alex"], (pick, psnr)
    assert pick["psnr_y"] >= psnr["psnr_y"] - 2.0, (pick, psnr)


def test_the_pick_holds_on_held_out_photos(
    demo_training: DemoTraining, sweep: dict[float, dict], tmp_path: Path
) -> None:
    from esrgan.data import build_holdout_set
    from esrgan.evaluation import evaluate_folder

    pick = _pick(demo_training, sweep)
    build_holdout_set(tmp_path)
    reports = {
        alpha: evaluate_folder(sweep[alpha]["generator"], tmp_path, metrics=("psnr_y", "niqe"), progress=False)
        for alpha in (0.0, pick["alpha"])
    }
    psnr, chosen = reports[0.0]["model"]["mean"], reports[pick["alpha"]]["model"]["mean"]
    assert chosen["niqe"] <= psnr["niqe"] - 0.3, (pick["alpha"], chosen, psnr)
    assert chosen["psnr_y"] >= psnr["psnr_y"] - 2.0, (pick["alpha"], chosen, psnr)
