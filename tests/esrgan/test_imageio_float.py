"""Floating-point TIFFs (issue 21, case 13): 0.0 is black and 1.0 white, read as 16-bit, not black.

The files are written by the tools users have: tifffile (what scikit-image and most scientific
code write), OpenCV and Pillow.
"""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from esrgan.imageio import ImageReadError, float_to_uint16, image_info, read_image, write_image
from pipeline.cli import main


def ramp(h: int = 12, w: int = 16, c: int = 3, dtype: type = np.float32) -> np.ndarray:
    """Values spread over [0, 1], different in every channel."""
    grid = np.linspace(0.0, 1.0, h * w * c).reshape(h, w, c)
    return np.ascontiguousarray(grid[..., ::-1] if c > 1 else grid[..., 0]).astype(dtype)


def expected(arr: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(arr.astype(np.float64), 0, 1) * 65535).astype(np.uint16)


@pytest.mark.parametrize(("channels", "dtype"), [(3, np.float32), (4, np.float32), (1, np.float32), (3, np.float64)])
def test_tifffile_float_tiffs_read_as_16_bit(tmp_path: Path, channels: int, dtype: type) -> None:
    tifffile = pytest.importorskip("tifffile")
    arr = ramp(c=channels, dtype=dtype)
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, arr, photometric="rgb" if channels > 1 else "minisblack")
    got = read_image(path)
    assert got.dtype == np.uint16 and np.array_equal(got, expected(arr))
    assert image_info(path) == (16, 12, channels)


def test_opencv_and_pillow_float_tiffs(tmp_path: Path) -> None:
    rgb = ramp()
    assert cv2.imwrite(str(tmp_path / "cv.tif"), np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV writes BGR
    assert np.array_equal(read_image(tmp_path / "cv.tif"), expected(rgb))
    grey = ramp(c=1)
    Image.fromarray(grey).save(tmp_path / "pil.tif")  # mode F
    assert np.array_equal(read_image(tmp_path / "pil.tif"), expected(grey))
    assert image_info(tmp_path / "pil.tif") == (16, 12, 1)


def test_out_of_range_values_are_clipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    arr = np.array([[-0.5, 0.25, 1.0, 7.0, np.nan, np.inf]], np.float32)
    with caplog.at_level(logging.WARNING, logger="esrgan.imageio"):
        got = float_to_uint16(arr, "x.tif")
    assert got.tolist() == [[0, 16384, 65535, 65535, 0, 65535]]
    assert "x.tif: floating-point values span -0.5..7; read as 0..1 and clipped" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="esrgan.imageio"):
        float_to_uint16(np.array([[0.0, 1.0]], np.float32))
    assert not caplog.text


@pytest.mark.parametrize(("channels", "dtype", "what"), [(3, np.float16, "16-bit"), (2, np.float32, "2 channel(s)")])
def test_unsupported_float_layouts_are_one_line_without_opencv_noise(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], channels: int, dtype: type, what: str
) -> None:
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "odd.tif"
    layout = {"photometric": "rgb"} if channels == 3 else {"photometric": "minisblack", "extrasamples": [2]}
    tifffile.imwrite(path, ramp(c=channels, dtype=dtype), planarconfig="contig", **layout)  # type: ignore[arg-type]
    for read in (read_image, image_info):
        with pytest.raises(ImageReadError) as err:
            read(path)
        assert str(err.value).startswith(f"{path}: a ") and what in str(err.value) and "\n" not in str(err.value)
    assert capfd.readouterr().err == ""


@pytest.fixture(scope="module")
def nearest_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An x4 RRDBNet that upscales by pixel repetition: every conv passes the 3 colour channels through,
    the trunk adds nothing. What comes out shows what was read (a black read gives a black output)."""
    import warnings

    import torch

    from esrgan.models import RRDBNet, save_generator

    model = RRDBNet(num_feat=8, num_block=1, num_grow=4)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        for conv in (model.conv_first, model.conv_up1, model.conv_up2, model.conv_hr, model.conv_last):
            for i in range(3):
                conv.weight[i, i, 1, 1] = 1.0
    path = tmp_path_factory.mktemp("nearest") / "nearest.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        save_generator(model, path)
    return path


def test_a_float_tiff_upscales_like_the_same_image_as_16_bit_png(nearest_model: Path, tmp_path: Path, capsys) -> None:
    """The reported case: a float32 TIFF in [0, 1] upscaled to black."""
    tifffile = pytest.importorskip("tifffile")
    arr = ramp(8, 10) * 0.8 + 0.1
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "photo.tif", arr, photometric="rgb")
    write_image(tmp_path / "ref" / "photo.png", expected(arr))  # the same pixels, 16-bit PNG
    for folder in ("in", "ref"):
        code = main(
            ["upscale", str(tmp_path / folder), "-m", str(nearest_model), "-o", str(tmp_path / f"out-{folder}")]
        )
        assert code == 0, capsys.readouterr().err
    from_tiff, from_png = (read_image(tmp_path / f"out-{f}" / "photo_x4.png") for f in ("in", "ref"))
    assert from_tiff.shape == (32, 40, 3) and from_tiff.dtype == np.uint16
    assert np.array_equal(from_tiff, from_png)
    nearest = expected(arr).repeat(4, axis=0).repeat(4, axis=1).astype(np.int64)
    assert np.abs(from_tiff.astype(np.int64) - nearest).max() <= 1  # the picture, not black


def test_the_server_reads_float_grey_images_too() -> None:
    from pipeline.registry.pyfunc_model import decode_image

    grey = ramp(c=1)
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="TIFF")
    got = decode_image(base64.b64encode(buf.getvalue()).decode("ascii"), 0, 10_000)
    assert got.dtype == np.uint16 and np.array_equal(got, expected(grey))
