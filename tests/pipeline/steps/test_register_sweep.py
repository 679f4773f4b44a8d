"""The register step's sweep images: one per validation photo, every alpha side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from esrgan.imageio import write_image
from esrgan.models import RRDBNet, save_generator
from esrgan.visualize import CAPTION_HEIGHT, GAP
from pipeline.steps.register import sweep_images


def test_sweep_images_one_per_photo_with_every_alpha(tmp_path: Path) -> None:
    torch.manual_seed(0)
    models = {
        a: save_generator(RRDBNet(num_feat=8, num_block=1, num_grow=4), tmp_path / f"a{a}.pth") for a in (0.0, 1.0)
    }
    val = tmp_path / "val"
    rng = np.random.default_rng(0)
    for name in ("b", "a", "c"):
        write_image(val / f"{name}.png", rng.integers(0, 256, (64, 72, 3), dtype=np.uint8))
    (val / "notes.txt").write_text("not an image")
    out = sweep_images(models, val, scale=4, photos=2)
    assert list(out) == ["a", "b"]  # sorted, the first `photos` images only
    crop = 64  # the whole (mod-cropped) height: smaller than the default 128 crop
    assert out["a"].shape == (crop + CAPTION_HEIGHT, 5 * (crop + GAP) - GAP, 3)  # LR, bicubic, 2 alphas, HR
    assert sweep_images(models, tmp_path / "missing", scale=4, photos=2) == {}
