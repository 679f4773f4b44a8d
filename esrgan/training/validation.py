"""Validation: PSNR-Y on whole validation images, and side-by-side sample crops as PNG.

PSNR follows the SR convention (``esrgan.metrics.psnr``: BT.601 Y, ``crop_border = scale``,
uint8-rounded images). The baseline ``psnr_y_bicubic`` upsamples the same LR images with
MATLAB-compatible bicubic (``esrgan.data.imresize``), the number a trained model must beat.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from esrgan.inference import upscale_tensor

if TYPE_CHECKING:
    from esrgan.data.dataset import PairedImageDataset, PairItem


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``C x H x W`` float in [0, 1] -> ``H x W x C`` uint8 (rounded)."""
    return image.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


class Validator:
    """Evaluate a generator on a :class:`esrgan.data.PairedImageDataset`.

    Args:
        dataset: whole validation images (items ``{"lr", "hr", "name"}``).
        scale: the model's scale (also the PSNR crop border).
        out_dir: where ``samples/<step>_<name>.png`` go.
        num_samples: how many images get a sample strip (the first ones).
        sample_crop: HR edge of the centre crop shown (LR-bicubic | SR | HR).
        tile: LR tile edge for ``upscale_tensor`` (0: whole image).
    """

    def __init__(
        self,
        dataset: PairedImageDataset,
        scale: int,
        out_dir: Path,
        num_samples: int = 3,
        sample_crop: int = 128,
        tile: int = 0,
    ) -> None:
        self.dataset, self.scale, self.out_dir = dataset, scale, Path(out_dir)
        self.num_samples, self.sample_crop, self.tile = num_samples, sample_crop, tile
        self._bicubic: list[np.ndarray] | None = None

    def _bicubic_images(self) -> list[np.ndarray]:
        # Computed once: the baseline does not change during training.
        if self._bicubic is None:
            from esrgan.data import imresize

            self._bicubic = [imresize(to_uint8(item["lr"]), self.scale) for item in self._items()]
        return self._bicubic

    def _items(self) -> Iterator[PairItem]:
        return (self.dataset[i] for i in range(len(self.dataset)))

    @torch.no_grad()
    def __call__(self, model: nn.Module, step: int) -> tuple[dict[str, float], list[Path]]:
        from esrgan.imageio import write_image
        from esrgan.visualize import side_by_side

        try:
            from esrgan.metrics import psnr
        except ImportError:  # before esrgan.metrics re-exports it
            from esrgan.metrics.fidelity import psnr

        was_training = model.training
        model.eval()
        scores, baseline, paths = [], [], []
        for i, (item, bicubic) in enumerate(zip(self._items(), self._bicubic_images(), strict=True)):
            sr = to_uint8(upscale_tensor(model, item["lr"][None], tile=self.tile, precision="fp32")[0])
            hr = to_uint8(item["hr"])
            h, w = min(sr.shape[0], hr.shape[0]), min(sr.shape[1], hr.shape[1])
            sr, hr, bicubic = sr[:h, :w], hr[:h, :w], bicubic[:h, :w]
            scores.append(psnr(sr, hr, crop_border=self.scale, y_channel=True))
            baseline.append(psnr(bicubic, hr, crop_border=self.scale, y_channel=True))
            if i < self.num_samples:
                c = min(self.sample_crop, h, w)
                y, x = (h - c) // 2, (w - c) // 2
                strip = side_by_side(
                    [(n, a[y : y + c, x : x + c]) for n, a in (("bicubic", bicubic), ("SR", sr), ("HR", hr))]
                )
                paths.append(write_image(self.out_dir / "samples" / f"{step:08d}_{item['name']}.png", strip))
        model.train(was_training)
        metrics = {"psnr_y": float(np.mean(scores)), "psnr_y_bicubic": float(np.mean(baseline))}
        return metrics, paths
