"""Bring any decoded image to 8-bit RGB, the one format the SR pipeline trains and evaluates on.

Training data (``extract_patches``), evaluation and the comparison pictures all go through
:func:`to_rgb8` and :func:`mod_crop`, so a photo means the same pixels everywhere.

Policies (each conversion is reported by name so callers can count and log it):

- ``16bit``: 16-bit samples become 8-bit by ``round(v / 257)`` (65535 -> 255 exactly).
- ``alpha_dropped``: an alpha channel that is fully opaque everywhere carries nothing; dropped.
- ``alpha_composited``: a partly transparent image is composited over white, as viewers show
  it; dropping alpha instead would expose arbitrary colours stored under transparent pixels.
- ``grey``: greyscale is replicated to three channels (the network is RGB in and out).
"""

from __future__ import annotations

import numpy as np


def to_rgb8(image: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Convert a ``read_image`` array to ``HxWx3`` uint8; returns it and the conversions applied."""
    arr = np.asarray(image)
    notes: list[str] = []
    if arr.dtype == np.uint16:
        arr = np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)
        notes.append("16bit")
    elif arr.dtype != np.uint8:
        raise ValueError(f"unsupported sample type {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        colour, alpha = arr[..., :-1], arr[..., -1:]
        if alpha.min() == 255:
            arr = colour
            notes.append("alpha_dropped")
        else:
            a = alpha.astype(np.float64) / 255.0
            arr = np.round(colour * a + 255.0 * (1.0 - a)).astype(np.uint8)
            notes.append("alpha_composited")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
        notes.append("grey")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"unsupported image shape {arr.shape}")
    return np.ascontiguousarray(arr), notes


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right edge so height and width are multiples of ``scale``."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]
