"""Image quality metrics for super-resolution, with the conventions of the SR literature.

* Fidelity (full reference): :func:`psnr`, :func:`ssim`, on the BT.601 Y channel by default,
  MATLAB/BasicSR-compatible.
* No reference: :func:`niqe`, a port of the authors' MATLAB release with its pristine model.
* Perceptual (full reference, learned): :func:`lpips` (needs torchvision's ImageNet trunks in
  the torch hub cache) and :func:`stlpips` (weights shipped in its pip package);
  :func:`perceptual_metrics` runs every variant and reports the unavailable ones.
* :mod:`esrgan.metrics.registry`: every metric of the evaluation report described once (name,
  direction, fidelity or perceptual, ImageNet trunk or not), the source of every list of names.

The names below are imported on first use, so reading the registry (``esrgan registry list``)
does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from esrgan.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from esrgan.metrics.fidelity import chroma_error, psnr, ssim
    from esrgan.metrics.niqe import niqe
    from esrgan.metrics.perceptual import (
        PERCEPTUAL_METRICS,
        MetricUnavailable,
        clear_cache,
        lpips,
        perceptual_metrics,
        stlpips,
    )
    from esrgan.metrics.ycbcr import rgb_to_cbcr, rgb_to_y

_LAZY = {
    "chroma_error": "esrgan.metrics.fidelity",
    "psnr": "esrgan.metrics.fidelity",
    "ssim": "esrgan.metrics.fidelity",
    "niqe": "esrgan.metrics.niqe",
    "PERCEPTUAL_METRICS": "esrgan.metrics.perceptual",
    "MetricUnavailable": "esrgan.metrics.perceptual",
    "clear_cache": "esrgan.metrics.perceptual",
    "lpips": "esrgan.metrics.perceptual",
    "perceptual_metrics": "esrgan.metrics.perceptual",
    "stlpips": "esrgan.metrics.perceptual",
    "rgb_to_cbcr": "esrgan.metrics.ycbcr",
    "rgb_to_y": "esrgan.metrics.ycbcr",
}

__all__ = [
    "PERCEPTUAL_METRICS",
    "MetricUnavailable",
    "chroma_error",
    "clear_cache",
    "lpips",
    "niqe",
    "perceptual_metrics",
    "psnr",
    "rgb_to_cbcr",
    "rgb_to_y",
    "ssim",
    "stlpips",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
