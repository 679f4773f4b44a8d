"""Full-reference fidelity metrics, PSNR and SSIM, with the MATLAB/BasicSR conventions of SR papers,
and the mean chroma error that tells a colour cast apart from a luminance change.

Both take RGB uint8 ``HxWx3`` images, remove ``crop_border`` pixels from every side (SR papers
crop ``scale`` pixels), and compute in float64, by default on the BT.601 Y channel
(:func:`esrgan.metrics.ycbcr.rgb_to_y`, not rounded). Y-channel and RGB numbers differ by
about 2 dB on Set14, so always report which was used.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate1d

from esrgan.metrics._validation import check_pair, crop
from esrgan.metrics.ycbcr import rgb_to_cbcr, rgb_to_y

PEAK = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * PEAK) ** 2
SSIM_C2 = (0.03 * PEAK) ** 2


def _prepare(
    sr: object, hr: object, crop_border: int, y_channel: bool, min_size: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Validated, cropped float64 images: ``HxW`` Y channels or ``HxWx3`` RGB."""
    sr_arr, hr_arr = check_pair(sr, hr)
    sr_arr, hr_arr = crop(sr_arr, crop_border, min_size), crop(hr_arr, crop_border, min_size)
    if y_channel:
        return rgb_to_y(sr_arr), rgb_to_y(hr_arr)
    return sr_arr.astype(np.float64), hr_arr.astype(np.float64)


def psnr(sr: np.ndarray, hr: np.ndarray, crop_border: int, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB (peak 255) between two RGB uint8 images.

    Args:
        sr: the restored image, ``HxWx3`` uint8 RGB.
        hr: the ground truth, same shape and dtype.
        crop_border: pixels removed from every side before comparing (``scale`` in SR papers).
        y_channel: compare the BT.601 Y channel (the SR convention) instead of all RGB channels.

    Returns:
        ``10 * log10(255**2 / MSE)``; ``float('inf')`` when the compared pixels are identical
        (MSE 0). JSON cannot hold infinity, so reports must map it explicitly.
    """
    a, b = _prepare(sr, hr, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(PEAK**2 / mse)


def chroma_error(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> float:
    """Mean absolute BT.601 chroma difference, ``(mean|dCb| + mean|dCr|) / 2``, on the 0-255 scale.

    PSNR-Y is blind to colour and PSNR-RGB mixes colour with luminance; this number isolates a
    colour cast (a GAN's typical failure): a uniform shift of ``d`` in Cb or Cr adds ``d / 2``.
    Same conventions as :func:`psnr` (RGB uint8, ``crop_border`` removed, float64).
    """
    sr_arr, hr_arr = check_pair(sr, hr)
    diff = rgb_to_cbcr(crop(sr_arr, crop_border, 1)) - rgb_to_cbcr(crop(hr_arr, crop_border, 1))
    return float(np.mean(np.abs(diff)))


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's ``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    window: np.ndarray = g / g.sum()
    return window


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """2-D Gaussian filtering keeping only the 'valid' region (window fully inside the image).

    The window is separable, so two exact 1-D passes replace one 2-D pass; the border mode
    is irrelevant because every pixel that saw padding is cropped.
    """
    r = len(g) // 2
    out: np.ndarray = correlate1d(correlate1d(img, g, axis=0, mode="constant"), g, axis=1, mode="constant")
    return out[r:-r, r:-r]


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    g = gaussian_window_1d()
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2)
    )
    return float(ssim_map.mean())


def ssim(sr: np.ndarray, hr: np.ndarray, crop_border: int, y_channel: bool = True) -> float:
    """Structural similarity (Wang et al. 2004) between two RGB uint8 images, as in MATLAB/BasicSR.

    11x11 Gaussian window with sigma 1.5, 'valid' filtering, C1 = (0.01*255)^2,
    C2 = (0.03*255)^2, population (not sample) statistics. With ``y_channel=False`` the
    SSIM of each RGB channel is averaged. At least 11x11 pixels must remain after cropping.

    Args:
        sr: the restored image, ``HxWx3`` uint8 RGB.
        hr: the ground truth, same shape and dtype.
        crop_border: pixels removed from every side before comparing.
        y_channel: compare the BT.601 Y channel instead of the RGB channels.

    Returns:
        The mean SSIM, 1.0 for identical images.
    """
    a, b = _prepare(sr, hr, crop_border, y_channel, min_size=SSIM_WINDOW)
    if y_channel:
        return _ssim_channel(a, b)
    return float(np.mean([_ssim_channel(a[:, :, c], b[:, :, c]) for c in range(3)]))
