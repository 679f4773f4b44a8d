"""MATLAB-compatible bicubic ``imresize``, built on the ``resize-right`` package.

Super-resolution papers make their low-resolution inputs with MATLAB's
``imresize(img, 1/scale, 'bicubic')``: Keys cubic kernel with a = -0.5, the kernel widened by
``1/scale`` when shrinking (antialiasing), symmetric padding (edge pixels repeated), output size
``ceil(in * scale)``. PIL's and OpenCV's bicubic differ (no antialiasing, a = -0.75) and cost
published PSNR, so LR images here always come from this function.

resize-right supplies the kernel, antialiasing and padding. Its sampling grid is centred on
the image, MATLAB's is anchored at the top-left corner; the two coincide whenever
``in * scale`` is a whole number (every mod-cropped SR pair) and otherwise differ by a constant
offset, which :func:`imresize` absorbs by shifting the kernel.

Precision: the computation is float64 throughout, and uint8 (or uint16) input is rounded and
clipped once at the end. MATLAB's native uint8 path rounds between the vertical and the
horizontal pass as well, so it can differ from this (and from MATLAB on ``im2double`` input,
BasicSR and bicubic-pytorch) by one grey level on a few pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from resize_right import interp_methods
from resize_right import resize as _rr_resize

_CUBIC_SUPPORT = 4  # the Keys kernel is non-zero on (-2, 2)


def _shifted_cubic(shift: float) -> Callable[[np.ndarray], np.ndarray]:
    """The a = -0.5 cubic (resize-right's ``cubic``) evaluated at ``x + shift``."""

    def kernel(x: np.ndarray) -> np.ndarray:
        weights: np.ndarray = interp_methods.cubic(x + shift)
        return weights

    return kernel


def _resize_axis(x: np.ndarray, axis: int, scale: float) -> np.ndarray:
    in_size = x.shape[axis]
    out_size = math.ceil(in_size * scale)  # MATLAB: ceil(scale .* size), float product and all
    # MATLAB samples input position (i + 0.5) / scale - 0.5 for output i; resize-right samples
    # the same positions minus `offset` (zero when in_size * scale is whole).
    offset = (out_size / scale - in_size) / 2
    # resize-right hands the kernel distances already multiplied by the antialiasing factor.
    kernel_shift = offset * min(scale, 1.0)
    factors = [1.0] * x.ndim
    factors[axis] = scale
    shape = list(x.shape)
    shape[axis] = out_size
    resized: np.ndarray = _rr_resize(
        x,
        scale_factors=factors,
        out_shape=shape,
        interp_method=_shifted_cubic(kernel_shift) if kernel_shift else interp_methods.cubic,
        # Widen the window so the shifted kernel's non-zero span stays inside it.
        support_sz=_CUBIC_SUPPORT + 2 * math.ceil(abs(kernel_shift)),
        antialiasing=True,
        pad_mode="symmetric",
    )
    return resized


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """Resize an ``HxW`` or ``HxWxC`` image by ``scale`` exactly as MATLAB's bicubic ``imresize``.

    Args:
        img: uint8 or uint16 (rounded and clipped back to that type, like MATLAB) or floating
            point (returned as float64, not clipped: bicubic overshoots near edges).
        scale: the same factor for height and width, e.g. ``1/4`` to make x4 LR images.

    Returns:
        An array of ``ceil(H * scale) x ceil(W * scale)`` (x C).
    """
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ValueError(f"imresize: expected an HxW or HxWxC image, got shape {arr.shape}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"imresize: scale must be a positive finite number, got {scale!r}")
    is_int = arr.dtype in (np.uint8, np.uint16)
    if not is_int and not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"imresize: expected uint8, uint16 or float input, got {arr.dtype}")
    if min(math.ceil(arr.shape[0] * scale), math.ceil(arr.shape[1] * scale)) < 1:
        raise ValueError(f"imresize: output of {arr.shape[:2]} x {scale} would be empty")

    out = arr.astype(np.float64)
    if scale != 1:
        # MATLAB resizes height first when both scales are equal.
        out = _resize_axis(out, 0, scale)
        out = _resize_axis(out, 1, scale)
    if is_int:
        info = np.iinfo(arr.dtype)
        return np.clip(np.round(out), info.min, info.max).astype(arr.dtype)
    return out
