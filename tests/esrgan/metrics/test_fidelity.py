"""PSNR / SSIM / Y-channel conventions: hand-computed values, skimage and BasicSR references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
from scipy.ndimage import uniform_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from esrgan.metrics import chroma_error, psnr, rgb_to_cbcr, rgb_to_y, ssim

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
Y_GAIN = (65.481 + 128.553 + 24.966) / 255  # dY per grey level of R=G=B (219/255)


def _random_image(h: int = 48, w: int = 40, lo: int = 10, hi: int = 245, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(lo, hi + 1, size=(h, w, 3), dtype=np.uint8)


def _astronaut_pair() -> tuple[np.ndarray, np.ndarray]:
    """A natural image and a deterministic 3x3 box blur of it (no RNG, no resizer involved)."""
    hr = skimage.data.astronaut()[:256, :256]
    sr = np.round(uniform_filter(hr.astype(np.float64), size=(3, 3, 1))).astype(np.uint8)
    return sr, hr


def test_y_channel_is_matlab_bt601() -> None:
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    y = rgb_to_y(img)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y[0], [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-12)


def test_psnr_constant_offset_is_exact() -> None:
    hr = _random_image()
    sr = hr + np.uint8(5)  # no overflow: values are at most 245
    assert psnr(sr, hr, 0, y_channel=False) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-12)
    assert psnr(sr, hr, 0, y_channel=True) == pytest.approx(10 * math.log10(255**2 / (5 * Y_GAIN) ** 2), abs=1e-10)


def test_psnr_crop_border_excludes_the_border() -> None:
    hr = _random_image()
    sr = hr + np.uint8(5)
    sr[:4] = 0
    sr[-4:] = 255
    sr[:, :4] = 77
    sr[:, -4:] = 3
    assert psnr(sr, hr, 4, y_channel=False) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-12)
    assert psnr(sr, hr, 3, y_channel=False) < 20  # one garbage ring left in: far lower


def test_psnr_mse_by_hand() -> None:
    hr = np.zeros((3, 3, 3), dtype=np.uint8)
    sr = hr.copy()
    sr[1, 1, 0] = 3  # one red value off by 3: RGB MSE = 9 / 27
    assert psnr(sr, hr, 0, y_channel=False) == pytest.approx(10 * math.log10(255**2 / (9 / 27)), abs=1e-12)
    dy = 3 * 65.481 / 255  # Y MSE = dy^2 / 9
    assert psnr(sr, hr, 0, y_channel=True) == pytest.approx(10 * math.log10(255**2 / (dy**2 / 9)), abs=1e-12)


def test_psnr_identical_is_inf() -> None:
    img = _random_image()
    assert psnr(img, img, 4) == math.inf
    assert psnr(img, img, 0, y_channel=False) == math.inf


def test_psnr_matches_skimage_on_rgb() -> None:
    sr, hr = _random_image(seed=1), _random_image(seed=2)
    expected = peak_signal_noise_ratio(hr[2:-2, 2:-2], sr[2:-2, 2:-2], data_range=255)
    assert psnr(sr, hr, 2, y_channel=False) == pytest.approx(expected, abs=1e-10)


def test_ssim_identical_is_one() -> None:
    img = _random_image()
    assert ssim(img, img, 4) == pytest.approx(1.0, abs=1e-12)
    assert ssim(img, img, 0, y_channel=False) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_images_by_hand() -> None:
    # Constant images: zero variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) everywhere.
    a = np.full((20, 20, 3), 100, dtype=np.uint8)
    b = np.full((20, 20, 3), 120, dtype=np.uint8)
    assert ssim(a, b, 0, y_channel=False) == pytest.approx((2 * 100 * 120 + C1) / (100**2 + 120**2 + C1), abs=1e-12)
    ya, yb = 16 + 100 * Y_GAIN, 16 + 120 * Y_GAIN
    assert ssim(a, b, 2, y_channel=True) == pytest.approx((2 * ya * yb + C1) / (ya**2 + yb**2 + C1), abs=1e-12)


@pytest.mark.parametrize("crop_border", [0, 4])
def test_ssim_matches_skimage(crop_border: int) -> None:
    sr, hr = _astronaut_pair()
    c = slice(crop_border, hr.shape[0] - crop_border)
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}
    expected_y = structural_similarity(rgb_to_y(hr)[c, c], rgb_to_y(sr)[c, c], **kw)
    assert ssim(sr, hr, crop_border) == pytest.approx(expected_y, abs=1e-9)
    expected_rgb = structural_similarity(hr[c, c].astype(np.float64), sr[c, c].astype(np.float64), channel_axis=2, **kw)
    assert ssim(sr, hr, crop_border, y_channel=False) == pytest.approx(expected_rgb, abs=1e-9)


def test_psnr_ssim_match_basicsr_reference() -> None:
    # Reference: BasicSR (basicsr-fixed 1.4.2 sdist) calculate_psnr / calculate_ssim, crop_border=4,
    # on this exact pair (BGR input). BasicSR computes Y in float32, hence ~1e-7 dB on Y.
    sr, hr = _astronaut_pair()
    assert psnr(sr, hr, 4) == pytest.approx(32.52709318355011, abs=1e-6)
    assert ssim(sr, hr, 4) == pytest.approx(0.9446674581141729, abs=1e-8)
    assert psnr(sr, hr, 4, y_channel=False) == pytest.approx(30.92163050797884, abs=1e-10)
    assert ssim(sr, hr, 4, y_channel=False) == pytest.approx(0.9253181331514845, abs=1e-10)


def test_y_and_rgb_differ() -> None:
    sr, hr = _astronaut_pair()
    assert psnr(sr, hr, 4) - psnr(sr, hr, 4, y_channel=False) > 1.0


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_input_validation(metric) -> None:
    img = _random_image()
    with pytest.raises(TypeError, match="uint8"):
        metric(img.astype(np.float32), img, 0)
    with pytest.raises(TypeError, match="NumPy array"):
        metric(img.tolist(), img, 0)
    with pytest.raises(ValueError, match="HxWx3"):
        metric(img[:, :, 0], img[:, :, 0], 0)
    with pytest.raises(ValueError, match="shapes differ"):
        metric(img[:-1], img, 0)
    with pytest.raises(ValueError, match="non-negative"):
        metric(img, img, -1)
    with pytest.raises(ValueError, match="too small"):
        metric(img, img, 20)


def test_ssim_needs_a_full_window() -> None:
    img = _random_image(14, 14)
    assert ssim(img, img, 1) == pytest.approx(1.0)  # 12x12 left: fine
    with pytest.raises(ValueError, match="11x11"):
        ssim(img, img, 2)  # 10x10 left


def test_chroma_error_sees_a_colour_cast_but_not_a_grey_shift() -> None:
    hr = _random_image(seed=3)
    assert chroma_error(hr, hr, 4) == 0.0
    grey_shift = (hr.astype(np.int16) + 8).astype(np.uint8)  # R = G = B offset: luminance only
    assert chroma_error(grey_shift, hr, 4) == pytest.approx(0.0, abs=1e-9)
    red = hr.copy()
    red[..., 0] += 10  # lo=10, hi=245: no wrap-around
    # MATLAB rgb2ycbcr: dCb = -37.797 * 10/255, dCr = 112 * 10/255, averaged over both channels.
    expected = (37.797 + 112.0) * 10 / 255 / 2
    assert chroma_error(red, hr, 4) == pytest.approx(expected, rel=1e-12)
    assert chroma_error(red, hr, 0) == pytest.approx(expected, rel=1e-12)


def test_cbcr_matches_skimage_ycbcr() -> None:
    from skimage.color import rgb2ycbcr

    img = _random_image(seed=5)
    np.testing.assert_allclose(rgb_to_cbcr(img) + 128, rgb2ycbcr(img)[..., 1:], atol=1e-9)
