"""Argument checks shared by the metrics, each failing with a one-line message."""

from __future__ import annotations

import numpy as np


def check_rgb_uint8(img: object, name: str) -> np.ndarray:
    """Return ``img`` as an ``HxWx3`` uint8 array, or raise a one-line ``TypeError``/``ValueError``."""
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{name}: expected a NumPy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise TypeError(f"{name}: expected uint8 (0-255), got {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name}: expected an HxWx3 RGB image, got shape {img.shape}")
    return img


def check_pair(sr: object, hr: object) -> tuple[np.ndarray, np.ndarray]:
    """Check an SR/HR pair of RGB uint8 images of the same shape."""
    sr_arr, hr_arr = check_rgb_uint8(sr, "sr"), check_rgb_uint8(hr, "hr")
    if sr_arr.shape != hr_arr.shape:
        raise ValueError(f"sr and hr shapes differ: {sr_arr.shape} vs {hr_arr.shape}")
    return sr_arr, hr_arr


def crop(img: np.ndarray, crop_border: int, min_size: int = 1) -> np.ndarray:
    """Remove ``crop_border`` pixels from every side; at least ``min_size`` pixels must remain."""
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    h, w = img.shape[:2]
    if min(h, w) - 2 * crop_border < min_size:
        raise ValueError(
            f"image of {h}x{w} is too small: cropping {crop_border} px per border must leave at least "
            f"{min_size}x{min_size} pixels"
        )
    if crop_border == 0:
        return img
    return img[crop_border:-crop_border, crop_border:-crop_border]
