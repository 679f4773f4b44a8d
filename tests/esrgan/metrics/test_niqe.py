"""NIQE against BasicSR's port of the MATLAB release, on images shipped with scikit-image.

Reference numbers (provenance): BasicSR's ``basicsr/metrics/niqe.py`` from the basicsr-fixed
1.4.2 sdist (PyPI), run in a throwaway environment by loading its module files; BasicSR
documents MATLAB R2021a = 5.72957338 and itself = 5.7295763 on its baboon.png.

* ``REF_FLOAT64``: BasicSR's ``niqe()`` with float64 everywhere (its ``imresize`` patched from
  float32 to float64 tensors, Y from the same rounded BT.601 Y). Agreement here is ~1e-13.
* ``REF_BASICSR``: unmodified ``calculate_niqe(bgr, crop_border, convert_to='y')``, which runs
  partly in float32. On natural images without flat areas it agrees to ~1e-5; on images
  with exactly flat regions (astronaut's background) float32 rounding flips MSCN values that
  should be 0 and moves NIQE by up to ~0.04, so those are compared only in float64.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from scipy.ndimage import gaussian_filter

from esrgan.metrics import niqe, rgb_to_y
from esrgan.metrics.niqe import niqe_gray, pristine_params

RESOURCES = Path(__file__).resolve().parents[3] / "esrgan" / "metrics" / "resources"


def _rgb(name: str) -> np.ndarray:
    img = getattr(skimage.data, name)()
    return np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img[:, :, :3]


# (image, crop_border) -> NIQE
REF_FLOAT64 = {
    ("astronaut", 0): 3.1004515331844975,
    ("astronaut", 4): 3.020526917616091,
    ("camera", 0): 3.1566411976539346,
    ("coffee", 0): 4.115331588269313,
    ("chelsea", 0): 2.625526679667967,
    ("chelsea", 4): 2.6893130155950464,
    ("coins", 0): 3.6359418730014887,
    ("coins", 4): 3.9776891398621,
}
REF_BASICSR = {
    ("chelsea", 0): 2.625524381291432,
    ("chelsea", 4): 2.6893133463073955,
    ("coins", 0): 3.6359448114162265,
    ("coins", 4): 3.9776913048974154,
}


@pytest.mark.parametrize(("name", "crop_border"), list(REF_FLOAT64))
def test_niqe_matches_float64_reference(name: str, crop_border: int) -> None:
    assert niqe(_rgb(name), crop_border) == pytest.approx(REF_FLOAT64[(name, crop_border)], abs=1e-9)


@pytest.mark.parametrize(("name", "crop_border"), list(REF_BASICSR))
def test_niqe_matches_unmodified_basicsr(name: str, crop_border: int) -> None:
    assert niqe(_rgb(name), crop_border) == pytest.approx(REF_BASICSR[(name, crop_border)], abs=1e-5)


def test_pristine_parameters_are_the_official_file() -> None:
    data = (RESOURCES / "niqe_pris_params.npz").read_bytes()
    assert hashlib.sha256(data).hexdigest() == "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"
    mu, cov, window = pristine_params()
    assert mu.shape == (36,) and cov.shape == (36, 36)
    np.testing.assert_allclose(cov, cov.T, atol=1e-12)
    assert mu[0] == pytest.approx(2.60131368, abs=1e-8)  # first entry of MATLAB's mu_prisparam
    # MATLAB fspecial('gaussian', 7, 7/6)
    x = np.arange(-3, 4)
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * (7 / 6) ** 2))
    np.testing.assert_allclose(window, g / g.sum(), atol=1e-15)


def test_grey_input_is_used_as_is() -> None:
    img = _rgb("chelsea")
    y = np.round(rgb_to_y(img)).astype(np.uint8)
    assert niqe(y) == pytest.approx(niqe(img), abs=1e-12)
    assert niqe(img, 4) == pytest.approx(niqe_gray(y[4:-4, 4:-4]), abs=1e-12)


def test_niqe_grows_with_blur() -> None:
    img = _rgb("chelsea")
    values = [niqe(img)]
    for sigma in (1, 2):
        values.append(niqe(np.round(gaussian_filter(img.astype(np.float64), (sigma, sigma, 0))).astype(np.uint8)))
    assert values[0] < values[1] - 1 < values[2] - 2


def test_niqe_errors() -> None:
    img = _rgb("chelsea")
    with pytest.raises(TypeError, match="uint8"):
        niqe(img.astype(np.float64))
    with pytest.raises(ValueError, match="HxWx3 RGB or HxW"):
        niqe(img[:, :, :2])
    with pytest.raises(ValueError, match="96x96"):
        niqe(img[:95, :200])
    with pytest.raises(ValueError, match="too small"):
        niqe(img[:100, :200], crop_border=4)  # 92 rows left
    with pytest.raises(ValueError, match="flat"):
        niqe(np.full((96, 96, 3), 128, dtype=np.uint8))


def test_single_block_uses_zero_covariance_like_matlab() -> None:
    """One 96x96 block: MATLAB's ``nancov`` of one row is zeros (NumPy's ``cov`` would be NaN),
    so NIQE reduces to the distance under the pristine covariance alone."""
    from resize_right import interp_methods
    from resize_right import resize as rr_resize

    from esrgan.metrics.niqe import BLOCK_SIZE, _block_features, _mscn, _to_blocks

    y = np.round(rgb_to_y(_rgb("chelsea")[:96, :96]))
    mu_pris, cov_pris, window = pristine_params()
    with np.errstate(divide="ignore", invalid="ignore"):
        half = rr_resize(
            y, scale_factors=0.5, interp_method=interp_methods.cubic, antialiasing=True, pad_mode="symmetric"
        )
        feats = np.concatenate(
            [
                _block_features(_to_blocks(_mscn(y, window), BLOCK_SIZE)),
                _block_features(_to_blocks(_mscn(half, window), BLOCK_SIZE // 2)),
            ],
            axis=1,
        )
    assert feats.shape == (1, 36)
    diff = mu_pris - feats[0]
    expected = float(np.sqrt(diff @ np.linalg.pinv(cov_pris / 2) @ diff))
    assert niqe(_rgb("chelsea")[:96, :96]) == pytest.approx(expected, rel=1e-12)
    # Two different blocks do add their own covariance: the value moves.
    assert niqe(_rgb("chelsea")[:96, :192]) != pytest.approx(expected, rel=1e-3)
