"""MATLAB-compatible bicubic imresize: against bicubic-pytorch, MATLAB's algorithm, and known properties."""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import pytest
import torch
from bicubic_pytorch.core import imresize as bp_imresize
from PIL import Image

from esrgan.data import imresize

PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png"),  # 512x512
    "chelsea": ("skimage", "data/chelsea.png"),  # 451x300: odd width
    "china": ("sklearn.datasets", "images/china.jpg"),  # 640x427: odd height
}


def _photo(name: str) -> np.ndarray:
    module, path = PHOTOS[name]
    with Image.open(str(resources.files(module).joinpath(path))) as img:
        return np.asarray(img.convert("RGB"))


def _reference(img: np.ndarray, scale: float) -> np.ndarray:
    """bicubic-pytorch (an independent MATLAB port, float32) on an HWC array."""
    out = bp_imresize(torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1), scale=scale)
    return out.permute(1, 2, 0).numpy().astype(np.float64)


def _matlab_resize_1d(x: np.ndarray, scale: float) -> np.ndarray:
    """A line-by-line transcription of MATLAB's imresize ``contributions`` (1-based), applied along axis 0."""
    in_len = x.shape[0]
    out_len = math.ceil(in_len * scale)
    kernel_width = 4.0
    if scale < 1:
        h = lambda t: scale * _keys(scale * t)  # noqa: E731
        kernel_width /= scale
    else:
        h = _keys
    u = np.arange(1, out_len + 1) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    p = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(p)[None, :]  # 1-based, as in MATLAB
    weights = h(u[:, None] - indices)
    weights /= weights.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(1, in_len + 1), np.arange(in_len, 0, -1)])
    indices = aux[np.mod(indices - 1, 2 * in_len).astype(int)] - 1
    return np.einsum("op,op...->o...", weights, x[indices])


def _keys(t: np.ndarray) -> np.ndarray:
    a = np.abs(t)
    return (1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1) + (-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) * ((a > 1) & (a <= 2))


@pytest.mark.parametrize("name", sorted(PHOTOS))
@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 1 / 2, 2, 0.37])
def test_matches_bicubic_pytorch_on_photos(name: str, scale: float) -> None:
    img = _photo(name)
    ours = imresize(img, scale)
    ref = _reference(img, scale)
    assert ours.dtype == np.uint8
    assert ours.shape == ref.shape == (math.ceil(img.shape[0] * scale), math.ceil(img.shape[1] * scale), 3)
    diff = np.abs(ours.astype(int) - np.clip(np.round(ref), 0, 255).astype(int))
    assert diff.max() <= 1
    assert (diff > 0).mean() < 1e-3  # off by one only where float32 rounding straddles .5
    # Unrounded, the two agree to float32 precision.
    assert np.abs(imresize(img.astype(np.float64), scale) - ref).max() < 0.02


def test_matlab_reference_numbers() -> None:
    # MATLAB imresize(reshape(0:15, 4, 4)', [3 3]) as documented by bicubic-pytorch (Son, 2020).
    # Its docstring prints 6.1505 at [1, 0], a typo: the input is point-symmetric about 7.5, so
    # out[1, 0] = 15 - out[1, 2] = 6.1501, which is what we use.
    expected = np.array(
        [[0.7506, 2.1004, 3.4503], [6.1501, 7.5000, 8.8499], [11.5497, 12.8996, 14.2494]],
    )
    out = imresize(np.arange(16, dtype=np.float64).reshape(4, 4), 0.75)
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize(("shape", "scale"), [((37, 51), 1 / 4), ((37, 51), 0.3), ((23, 18), 2.5), ((30, 31), 1 / 3)])
def test_matches_matlab_algorithm_transcription(shape: tuple[int, int], scale: float) -> None:
    # Float64 against float64: sizes where in * scale is not whole exercise the grid offset.
    img = np.random.default_rng(0).random((*shape, 3)) * 255
    expected = _matlab_resize_1d(_matlab_resize_1d(img, scale).swapaxes(0, 1), scale).swapaxes(0, 1)
    np.testing.assert_allclose(imresize(img, scale), expected, atol=1e-9)


@pytest.mark.parametrize(
    ("shape", "scale", "out"),
    [((37, 51), 1 / 4, (10, 13)), ((37, 51), 3, (111, 153)), ((100, 99), 1 / 3, (34, 33)), ((5, 7), 0.5, (3, 4))],
)
def test_output_size_is_ceil(shape: tuple[int, int], scale: float, out: tuple[int, int]) -> None:
    assert imresize(np.zeros(shape, np.uint8), scale).shape == out
    assert imresize(np.zeros((*shape, 3), np.float32), scale).shape == (*out, 3)


@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 0.7, 2, 3.5])
def test_constant_image_stays_constant(scale: float) -> None:
    assert np.all(imresize(np.full((33, 45, 3), 173, np.uint8), scale) == 173)
    np.testing.assert_allclose(imresize(np.full((33, 45), 0.25), scale), 0.25, atol=1e-12)


def test_downscaling_a_nearest_upsampled_image_recovers_block_interiors() -> None:
    # 8x8 LR blocks of random grey levels, x4 nearest-upsampled: the x4 bicubic kernel reaches
    # 2 LR pixels, so LR pixels 2..5 of every block see only that block's value.
    rng = np.random.default_rng(1)
    values = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    lr_blocks = np.repeat(np.repeat(values, 8, axis=0), 8, axis=1)
    hr = np.repeat(np.repeat(lr_blocks, 4, axis=0), 4, axis=1)
    out = imresize(hr, 1 / 4)
    assert out.shape == lr_blocks.shape
    for by in range(4):
        for bx in range(5):
            interior = out[by * 8 + 2 : by * 8 + 6, bx * 8 + 2 : bx * 8 + 6]
            assert np.all(interior == values[by, bx])
    # Near block edges it is smooth, not nearest: still close on average.
    assert np.abs(out.astype(int) - lr_blocks).mean() < 12


@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 1 / 2, 2, 3])
def test_linear_ramps_are_preserved_away_from_borders(scale: float) -> None:
    h, w = 64, 72
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    ramp = 0.7 * y - 1.3 * x + 5.0
    out = imresize(ramp, scale)
    # MATLAB's grid: output pixel i samples input position (i + 0.5) / scale - 0.5.
    uy = (np.arange(out.shape[0]) + 0.5) / scale - 0.5
    ux = (np.arange(out.shape[1]) + 0.5) / scale - 0.5
    expected = 0.7 * uy[:, None] - 1.3 * ux[None, :] + 5.0
    margin = math.ceil(3 * max(scale, 1 / scale))  # beyond the kernel's reach of the border
    inner = (slice(margin, -margin), slice(margin, -margin))
    np.testing.assert_allclose(out[inner], expected[inner], atol=1e-9)


def test_float_is_unclipped_and_integers_are_clipped() -> None:
    step = np.zeros((16, 16))
    step[:, 8:] = 1.0
    up = imresize(step, 2)
    assert up.dtype == np.float64
    assert up.max() > 1.0 and up.min() < 0.0  # bicubic overshoot survives in float
    up8 = imresize((step * 255).astype(np.uint8), 2)
    assert up8.dtype == np.uint8 and up8.max() == 255 and up8.min() == 0
    np.testing.assert_array_equal(up8, np.clip(np.round(up * 255), 0, 255))
    up16 = imresize((step * 65535).astype(np.uint16), 2)
    assert up16.dtype == np.uint16 and up16.max() == 65535


def test_scale_one_is_identity_and_input_is_untouched() -> None:
    img = np.random.default_rng(2).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    before = img.copy()
    np.testing.assert_array_equal(imresize(img, 1), img)
    imresize(img, 0.5)
    np.testing.assert_array_equal(img, before)


@pytest.mark.parametrize(
    ("img", "scale", "error", "text"),
    [
        (np.zeros((4, 4, 3, 1), np.uint8), 0.5, ValueError, "HxW"),
        (np.zeros((4, 4), np.uint8), 0.0, ValueError, "positive"),
        (np.zeros((4, 4), np.uint8), float("nan"), ValueError, "positive"),
        (np.zeros((4, 4), np.int32), 0.5, TypeError, "int32"),
    ],
)
def test_rejects_bad_arguments(img: np.ndarray, scale: float, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        imresize(img, scale)
