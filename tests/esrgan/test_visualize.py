"""Comparison images: panel order, captions, the chosen crop, and equality with whole-image SR."""

from __future__ import annotations

import numpy as np
import torch

from esrgan.data import imresize, mod_crop
from esrgan.inference import upscale
from esrgan.models import RRDBNet
from esrgan.visualize import CAPTION_HEIGHT, GAP, comparison, detail_crop_box, side_by_side, sweep_comparisons


def _photo() -> np.ndarray:
    import skimage.data

    return skimage.data.chelsea()[:150, :222]  # not a multiple of 4: mod-cropped


def test_detail_crop_box_finds_the_textured_region() -> None:
    img = np.full((96, 160, 3), 128, np.uint8)
    img[40:72, 120:152] = np.random.default_rng(0).integers(0, 256, (32, 32, 3))
    y, x, size = detail_crop_box(img, 32, 4)
    assert size == 32 and y % 4 == 0 and x % 4 == 0
    assert abs(y - 40) <= 8 and abs(x - 120) <= 8


def test_side_by_side_layout_and_captions() -> None:
    a, b = np.zeros((20, 10, 3), np.uint8), np.full((20, 12, 3), 200, np.uint8)
    out = side_by_side([("a", a), ("b", b)])
    assert out.shape == (20 + CAPTION_HEIGHT, 10 + GAP + 12, 3)
    assert (out[CAPTION_HEIGHT:, :10] == 0).all() and (out[CAPTION_HEIGHT:, 10 + GAP :] == 200).all()
    assert (out[:CAPTION_HEIGHT, :10] < 128).any(), "the caption is drawn"


def test_comparison_panels_equal_whole_image_results() -> None:
    torch.manual_seed(0)
    models = {"m1": RRDBNet(num_feat=8, num_block=1, num_grow=4).eval()}
    with torch.no_grad():
        for p in models["m1"].parameters():
            p.add_(0.05 * torch.randn_like(p))  # a non-trivial output
    hr_full = _photo()
    out = comparison(hr_full, models, scale=4, crop=64)
    panel_w = 64 + GAP
    assert out.shape == (64 + CAPTION_HEIGHT, 4 * panel_w - GAP, 3)  # LR, bicubic, m1, HR
    hr = mod_crop(hr_full, 4)
    y, x, c = detail_crop_box(hr, 64, 4)
    lr = imresize(hr, 1 / 4)
    panels = [out[CAPTION_HEIGHT:, i * panel_w : i * panel_w + 64] for i in range(4)]
    np.testing.assert_array_equal(panels[1], imresize(lr, 4)[y : y + c, x : x + c])
    np.testing.assert_array_equal(panels[3], hr[y : y + c, x : x + c])
    whole = upscale(models["m1"], lr)[y : y + c, x : x + c]
    assert np.abs(panels[2].astype(int) - whole.astype(int)).max() <= 1


def test_sweep_comparisons_orders_alphas() -> None:
    torch.manual_seed(0)
    g = RRDBNet(num_feat=8, num_block=1, num_grow=4).eval()
    out = sweep_comparisons({"cat": _photo()}, {1.0: g, 0.0: g, 0.5: g}, scale=4, crop=32)
    assert list(out) == ["cat"]
    assert out["cat"].shape[1] == 6 * (32 + GAP) - GAP  # LR, bicubic, 3 alphas, HR
