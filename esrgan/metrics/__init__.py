"""Image quality metrics for super-resolution, with the conventions of the SR literature.

* Fidelity (full reference): :func:`psnr`, :func:`ssim`, on the BT.601 Y channel by default,
  MATLAB/BasicSR-compatible.
* No reference: :func:`niqe`, a port of the authors' MATLAB release with its pristine model.
* Perceptual (full reference, learned): :func:`lpips` (needs torchvision's ImageNet trunks in
  the torch hub cache) and :func:`stlpips` (weights shipped in its pip package);
  :func:`perceptual_metrics` runs every variant and reports the unavailable ones.
"""

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
