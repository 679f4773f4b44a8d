"""NIQE, the no-reference Natural Image Quality Evaluator (Mittal, Soundararajan and Bovik 2013).

A port of the authors' MATLAB release (``niqe_release``: ``computequality.m``,
``computefeature.m``, ``estimateaggdparam.m``) following BasicSR's ``calculate_niqe``, which
reproduces MATLAB R2021a on its test image to 4 decimals:

1. RGB -> Y (BT.601, MATLAB ``rgb2ycbcr``), rounded to integers like MATLAB's uint8 output;
   grey images are used as they are. Then ``crop_border`` pixels are removed from each side.
2. The image is cut to whole 96x96 blocks (no overlap).
3. At two scales (full, then MATLAB-bicubic half size): MSCN coefficients
   ``(I - mu) / (sigma + 1)`` with a 7x7 Gaussian (sigma 7/6, replicate padding); per block,
   an AGGD fit of the coefficients and of their products with 4 circularly shifted
   neighbours (18 features), fitted by a grid search over shape 0.2:0.001:10.
4. A multivariate Gaussian fitted to the block features (rows with NaN dropped, as MATLAB's
   ``nancov``) is compared with the official pristine model (``resources/niqe_pris_params.npz``,
   see ``resources/README.md``): ``sqrt((mu_p - mu_d) pinv((C_p + C_d) / 2) (mu_p - mu_d)')``.

Lower is better. Computed in float64 (BasicSR partly uses float32; see the tests for the
agreement achieved).
"""

from __future__ import annotations

import functools
import warnings
from importlib import resources

import numpy as np
from resize_right import interp_methods
from resize_right import resize as rr_resize
from scipy.ndimage import convolve
from scipy.special import gamma

from esrgan.metrics._validation import crop
from esrgan.metrics.ycbcr import rgb_to_y

BLOCK_SIZE = 96
_PRISTINE_FILE = "niqe_pris_params.npz"


@functools.lru_cache(maxsize=1)
def pristine_params() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The official pristine model: mean (36,), covariance (36, 36) and the 7x7 Gaussian window."""
    with resources.files("esrgan.metrics").joinpath("resources").joinpath(_PRISTINE_FILE).open("rb") as fh:
        data = np.load(fh)
        return data["mu_pris_param"].reshape(-1), data["cov_pris_param"], data["gaussian_window"]


@functools.lru_cache(maxsize=1)
def _aggd_grid() -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's ``gam = 0.2:0.001:10`` and ``r_gam = gamma(2/g)^2 / (gamma(1/g) gamma(3/g))``."""
    gam = np.arange(0.2, 10.001, 0.001)
    r_gam = gamma(2 / gam) ** 2 / (gamma(1 / gam) * gamma(3 / gam))
    return gam, r_gam


def _aggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AGGD shape and left/right scales for each row of ``x`` (n_blocks, n_values).

    A row without negative or positive values gives NaN scales and, like MATLAB's ``min`` over
    an all-NaN vector, the first grid shape (0.2).
    """
    gam, r_gam = _aggd_grid()
    neg, pos = x < 0, x > 0
    sq = x * x
    left_std = np.sqrt((sq * neg).sum(axis=1) / neg.sum(axis=1))
    right_std = np.sqrt((sq * pos).sum(axis=1) / pos.sum(axis=1))
    gammahat = left_std / right_std
    rhat = np.abs(x).mean(axis=1) ** 2 / sq.mean(axis=1)
    rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
    alpha = gam[np.argmin((r_gam[None, :] - rhatnorm[:, None]) ** 2, axis=1)]
    ratio = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left_std * ratio, right_std * ratio


def _block_features(blocks: np.ndarray) -> np.ndarray:
    """The 18 NIQE features of each block in ``blocks`` (n, b, b) -> (n, 18)."""
    n = blocks.shape[0]
    flat = blocks.reshape(n, -1)
    alpha, beta_l, beta_r = _aggd_fit(flat)
    feats = [alpha, (beta_l + beta_r) / 2]
    # MATLAB circshift by [0 1], [1 0], [1 1], [-1 1]; ([-1 1] pairs the same pixels as [1 -1].)
    for shift in ((0, 1), (1, 0), (1, 1), (-1, 1)):
        prod = (blocks * np.roll(blocks, shift, axis=(1, 2))).reshape(n, -1)
        alpha, beta_l, beta_r = _aggd_fit(prod)
        mean = (beta_r - beta_l) * (gamma(2 / alpha) / gamma(1 / alpha))
        feats += [alpha, mean, beta_l, beta_r]
    return np.stack(feats, axis=1)


def _to_blocks(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape
    blocks: np.ndarray = img.reshape(h // size, size, w // size, size).transpose(0, 2, 1, 3).reshape(-1, size, size)
    return blocks


def _mscn(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (MATLAB ``imfilter(..., 'replicate')``)."""
    mu = convolve(img, window, mode="nearest")
    sigma = np.sqrt(np.abs(convolve(img * img, window, mode="nearest") - mu * mu))
    mscn: np.ndarray = (img - mu) / (sigma + 1)
    return mscn


def _nan_cov(feats: np.ndarray) -> np.ndarray:
    """MATLAB ``nancov`` (rows with NaN dropped; one remaining row gives zeros, not NaN)."""
    rows = feats[~np.isnan(feats).any(axis=1)]
    if len(rows) < 2:
        return np.zeros((feats.shape[1], feats.shape[1]))
    return np.cov(rows, rowvar=False)


def niqe_gray(img: np.ndarray) -> float:
    """NIQE of an ``HxW`` grey or Y image on the 0-255 scale (any numeric dtype, used as is)."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"niqe_gray: expected an HxW image, got shape {img.shape}")
    h, w = img.shape
    nh, nw = h // BLOCK_SIZE, w // BLOCK_SIZE
    if nh == 0 or nw == 0:
        raise ValueError(f"NIQE needs at least {BLOCK_SIZE}x{BLOCK_SIZE} pixels, got {h}x{w}")
    img = img[: nh * BLOCK_SIZE, : nw * BLOCK_SIZE]
    mu_pris, cov_pris, window = pristine_params()

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # Flat blocks give 0/0 in the AGGD fit; MATLAB yields NaN there too and drops them later.
        warnings.simplefilter("ignore", RuntimeWarning)
        scale1 = _block_features(_to_blocks(_mscn(img, window), BLOCK_SIZE))
        # Half size, MATLAB bicubic with antialiasing; exact here since the size is a multiple of 96.
        half = rr_resize(
            img, scale_factors=0.5, interp_method=interp_methods.cubic, antialiasing=True, pad_mode="symmetric"
        )
        scale2 = _block_features(_to_blocks(_mscn(half, window), BLOCK_SIZE // 2))
        feats = np.concatenate([scale1, scale2], axis=1)
        mu_dist = np.nanmean(feats, axis=0)
    if np.isnan(mu_dist).any():
        raise ValueError("NIQE is undefined for this image: no 96x96 block has texture (flat image)")
    cov_dist = _nan_cov(feats)
    diff = mu_pris - mu_dist
    quality = diff @ np.linalg.pinv((cov_pris + cov_dist) / 2) @ diff
    return float(np.sqrt(quality))


def niqe(img: np.ndarray, crop_border: int = 0) -> float:
    """NIQE of an RGB (``HxWx3``) or grey (``HxW``) uint8 image; lower is better.

    RGB is reduced to the BT.601 Y channel rounded to integers (MATLAB ``rgb2ycbcr`` on uint8,
    as BasicSR does). ``crop_border`` pixels are removed from each side first. At least one
    96x96 block must remain.

    Raises:
        TypeError, ValueError: wrong dtype or shape, image too small, or a flat image.
    """
    if not isinstance(img, np.ndarray):
        raise TypeError(f"niqe: expected a NumPy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise TypeError(f"niqe: expected uint8 (0-255), got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 3:
        y = np.round(rgb_to_y(img))
    elif img.ndim == 2:
        y = img.astype(np.float64)
    else:
        raise ValueError(f"niqe: expected an HxWx3 RGB or HxW grey image, got shape {img.shape}")
    return niqe_gray(crop(y, crop_border, min_size=BLOCK_SIZE))
