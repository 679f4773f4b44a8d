"""YCbCr exactly as MATLAB's ``rgb2ycbcr`` computes it: the luma (Y) and the chroma (Cb, Cr).

ITU-R BT.601 on [0, 1] RGB, giving Y on the 0-255 scale (studio swing, 16-235):
``Y = 16 + 65.481 R + 128.553 G + 24.966 B``. This is what SR papers (and BasicSR) mean by
"PSNR on the Y channel"; OpenCV's ``COLOR_RGB2YCrCb`` is the JPEG (full-swing) variant and
gives different numbers.
"""

from __future__ import annotations

import numpy as np

#: MATLAB rgb2ycbcr's Y row, for R, G, B in [0, 1].
BT601_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
BT601_Y_OFFSET = 16.0


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y of an ``HxWx3`` RGB uint8 image, as float64 on the 0-255 scale, not rounded."""
    y: np.ndarray = img.astype(np.float64) / 255.0 @ BT601_Y_WEIGHTS + BT601_Y_OFFSET
    return y


#: MATLAB rgb2ycbcr's Cb and Cr rows, for R, G, B in [0, 1] (offset 128 cancels in differences).
BT601_CBCR_WEIGHTS = np.array([[-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]).T


def rgb_to_cbcr(img: np.ndarray) -> np.ndarray:
    """Cb and Cr of an ``HxWx3`` RGB uint8 image, ``HxWx2`` float64 on the 0-255 scale, minus 128."""
    cbcr: np.ndarray = img.astype(np.float64) / 255.0 @ BT601_CBCR_WEIGHTS
    return cbcr
