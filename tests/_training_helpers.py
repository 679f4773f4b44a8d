"""Shared fixtures for the training tests: tiny image folders and a tiny config (not a test module)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

TINY: dict[str, Any] = {
    "model": {"scale": 4, "num_feat": 8, "num_block": 1, "num_grow": 4},
    "pretrain_psnr": {
        "iterations": 6,
        "data": {"patch_size": 32, "batch_size": 2, "num_workers": 0},
        "optimizer": {"lr": 1e-3},
        "schedule": {"kind": "multistep", "milestones": [4], "gamma": 0.5},
        "log_every": 2,
        "val_every": 3,
        "checkpoint_every": 3,
    },
    "finetune_gan": {
        "iterations": 4,
        "data": {"patch_size": 128, "batch_size": 2, "num_workers": 0},
        "optimizer": {"lr": 1e-4},
        "optimizer_d": {"lr": 1e-4},
        "schedule": {"kind": "multistep", "milestones": [2], "gamma": 0.5},
        "discriminator": {"num_feat": 4},
        "perceptual": {"backbone": "random", "layers": {"conv2_2": 1.0}},
        "log_every": 2,
        "val_every": 0,
        "checkpoint_every": 2,
    },
    "runtime": {"device": "cpu", "deterministic": True, "seed": 0},
    "logging": {"keep_checkpoints": 2, "num_samples": 1, "sample_crop": 32, "progress_bar": False},
}


def tiny_config(**sections: dict[str, Any]) -> dict[str, Any]:
    """A copy of TINY with top-level sections shallow-merged (e.g. pretrain_psnr={"iterations": 4})."""
    cfg = copy.deepcopy(TINY)
    for key, value in sections.items():
        cfg[key] = {**cfg[key], **value}
    return cfg


def _smooth_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random colour blobs: low-frequency content an SR model can learn quickly."""
    small = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((size, size), Image.BICUBIC)
    return np.asarray(img)


def make_pairs(root: Path, count: int, hr_size: int, scale: int = 4, seed: int = 0) -> tuple[Path, Path]:
    """Write ``count`` HR PNGs and their MATLAB-bicubic LR into ``root/hr`` and ``root/lr``."""
    from esrgan.data import imresize

    rng = np.random.default_rng(seed)
    hr_dir, lr_dir = root / "hr", root / "lr"
    hr_dir.mkdir(parents=True, exist_ok=True)
    lr_dir.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        hr = _smooth_image(rng, hr_size)
        Image.fromarray(hr).save(hr_dir / f"img{i:02d}.png")
        Image.fromarray(imresize(hr, 1 / scale)).save(lr_dir / f"img{i:02d}.png")
    return hr_dir, lr_dir
