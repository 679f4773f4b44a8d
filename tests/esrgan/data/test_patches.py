"""Sub-image extraction: BasicSR positions, exact LR partners, bad inputs, atomic and parallel output."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from esrgan.data import ExtractConfig, crop_positions, extract_patches, extract_validation, imresize, mod_crop
from esrgan.imageio import read_image
from esrgan.owned_folders import MARKER, NotOwnedError


def _random_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.mark.parametrize(
    ("length", "crop", "step", "thresh", "expected"),
    [
        (1000, 480, 240, 0, [0, 240, 480, 520]),  # remainder 40 > 0: a last, border-flush crop
        (960, 480, 240, 0, [0, 240, 480]),  # exact fit
        (1000, 480, 240, 50, [0, 240, 480]),  # remainder 40 <= thresh_size: dropped
        (480, 480, 240, 0, [0]),
        (300, 480, 240, 0, [0]),  # shorter than the crop
        (2040, 480, 240, 0, [0, 240, 480, 720, 960, 1200, 1440, 1560]),  # a DIV2K side
    ],
)
def test_crop_positions_follow_basicsr(length: int, crop: int, step: int, thresh: int, expected: list[int]) -> None:
    assert crop_positions(length, crop, step, thresh) == expected


def test_positions_counts_names_and_exact_lr(tmp_path: Path) -> None:
    img = _random_rgb(170, 250)
    _save(tmp_path / "in" / "photo.png", img)
    summary = extract_patches(tmp_path / "in", tmp_path / "out", scale=4, crop_size=96, step=48, workers=1)
    # mod-crop 170x250 -> 168x248; rows [0, 48, 72], columns [0, 48, 96, 144, 152].
    ys, xs = [0, 48, 72], [0, 48, 96, 144, 152]
    hr = mod_crop(img, 4)
    assert hr.shape == (168, 248, 3)
    names = [f"photo_s{k:03d}.png" for k in range(1, 16)]
    assert sorted(p.name for p in (tmp_path / "out" / "hr").iterdir()) == names
    assert sorted(p.name for p in (tmp_path / "out" / "lr").iterdir()) == names
    for k, (y, x) in enumerate([(y, x) for y in ys for x in xs], 1):
        patch = read_image(tmp_path / "out" / "hr" / f"photo_s{k:03d}.png")
        np.testing.assert_array_equal(patch, hr[y : y + 96, x : x + 96])
        lr = read_image(tmp_path / "out" / "lr" / f"photo_s{k:03d}.png")
        assert lr.shape == (24, 24, 3)
        np.testing.assert_array_equal(lr, imresize(patch, 1 / 4))
    assert summary["images"] == 1 and summary["patches"] == 15
    assert summary["skipped"] == {} and summary["converted"] == {}
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
    assert not [p for p in (tmp_path / "out").rglob(".*") if p.name != MARKER]  # atomic writes leave no temporary files


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    src = tmp_path / "messy"
    _save(src / "good.png", _random_rgb(64, 64, 1))
    good = (src / "good.png").read_bytes()
    (src / "truncated.png").write_bytes(good[: len(good) // 2])
    (src / "fake.jpg").write_bytes(b"this is text, not a JPEG")
    (src / "notes.txt").write_text("hello")
    _save(src / "tiny.png", _random_rgb(20, 50, 2))
    _save(src / "grey.png", _random_rgb(64, 64, 3)[..., 0])
    opaque = np.dstack([_random_rgb(64, 64, 4), np.full((64, 64), 255, np.uint8)])
    _save(src / "opaque.png", opaque)
    clear = np.dstack([np.zeros((64, 64, 3), np.uint8), np.full((64, 64), 255, np.uint8)])
    clear[:32, :, 3] = 0  # top half fully transparent (black underneath), bottom half opaque black
    _save(src / "transparent.png", clear)
    deep = (np.arange(64 * 64 * 3, dtype=np.uint32).reshape(64, 64, 3) * 7 % 65536).astype(np.uint16)
    cv2.imwrite(str(src / "deep.png"), deep[..., ::-1])
    return src


def test_bad_inputs_have_one_line_messages_and_counts(
    messy_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="esrgan.data.patches"):
        summary = extract_patches(
            messy_folder, tmp_path / "out", scale=4, crop_size=32, step=32, min_size=32, workers=1
        )
    assert summary["skipped"] == {"not_image": 1, "too_small": 1, "unreadable": 2}
    assert summary["converted"] == {"16bit": 1, "alpha_composited": 1, "alpha_dropped": 1, "grey": 1}
    assert summary["images"] == 5 and summary["patches"] == 5 * 4
    expected = {
        "notes.txt": "not an image file; skipped",
        "truncated.png": "corrupt or truncated image",
        "fake.jpg": "not an image",
        "tiny.png": "50x20 is smaller than min_size 32 after mod-crop; skipped",
        "grey.png": "greyscale, replicated to RGB",
        "opaque.png": "opaque alpha channel dropped",
        "transparent.png": "transparent, composited over white",
        "deep.png": "16-bit, reduced to 8-bit",
    }
    messages = summary["messages"]
    assert len(messages) == len(expected)
    for name, text in expected.items():
        (line,) = [m for m in messages if m.startswith(f"{messy_folder / name}: ")]
        assert text in line and "\n" not in line
        assert line in caplog.messages
    patches = tmp_path / "out" / "hr"
    assert np.all(read_image(patches / "transparent_s001.png") == 255)  # transparent -> white
    assert np.all(read_image(patches / "transparent_s003.png") == 0)  # opaque black stays black
    grey = read_image(patches / "grey_s001.png")
    assert grey.shape == (32, 32, 3) and np.all(grey[..., 0] == grey[..., 2])
    deep = np.round(np.arange(64 * 64 * 3).reshape(64, 64, 3) * 7 % 65536 / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(read_image(patches / "deep_s001.png"), deep[:32, :32])
    assert not [p for p in (tmp_path / "out").rglob(".*") if p.name != MARKER]


def test_images_smaller_than_the_crop_become_one_patch_per_side(tmp_path: Path) -> None:
    img = _random_rgb(83, 203)
    _save(tmp_path / "in" / "strip.png", img)
    summary = extract_patches(tmp_path / "in", tmp_path / "out", scale=4, crop_size=96, step=48, min_size=64, workers=1)
    # 83x203 -> 80x200: height shorter than the crop -> one row of 80-high patches at x = 0, 48, 96, 104.
    assert summary["patches"] == 4 and summary["converted"] == {"smaller_than_crop": 1}
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "hr" / "strip_s004.png"), img[:80, 104:200])
    assert read_image(tmp_path / "out" / "lr" / "strip_s004.png").shape == (20, 24, 3)


def test_parallel_output_equals_serial_and_overwrite_policy(tmp_path: Path) -> None:
    for i in range(3):
        _save(tmp_path / "in" / f"im{i}.png", _random_rgb(100, 120, i))
    serial = extract_patches(tmp_path / "in", tmp_path / "one", crop_size=64, step=32, min_size=32, workers=1)
    parallel = extract_patches(tmp_path / "in", tmp_path / "two", crop_size=64, step=32, min_size=32, workers=2)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert files == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.png"))
    assert all((tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes() for f in files)
    assert serial["patches"] == parallel["patches"] == 3 * 3 * 3
    with pytest.raises(FileExistsError, match="already holds 54 extracted images; pass overwrite=True"):
        extract_patches(tmp_path / "in", tmp_path / "one", crop_size=64, step=32, min_size=32, workers=1)
    limited = extract_patches(
        tmp_path / "in", tmp_path / "one", crop_size=64, step=32, min_size=32, workers=1, patch_limit=2, overwrite=True
    )
    assert limited["patches"] == 6
    assert len(list((tmp_path / "one" / "hr").iterdir())) == 6  # stale patches of the earlier run removed
    assert len(list((tmp_path / "in").iterdir())) == 3  # the source is never touched


def _sigterm_is_default() -> bool:
    return signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_overwrite_clears_only_a_folder_esrgan_made(tmp_path: Path) -> None:
    """A folder of someone else's PNGs is refused whole; one esrgan made (marker, or an older
    one's summary.json) is cleared of its own outputs."""
    _save(tmp_path / "in" / "photo.png", _random_rgb(100, 100))
    theirs = tmp_path / "theirs"
    _save(theirs / "hr" / "holiday.png", _random_rgb(10, 10))
    with pytest.raises(NotOwnedError, match="theirs: holds files esrgan did not write"):
        extract_patches(tmp_path / "in", theirs, crop_size=64, step=32, min_size=32, workers=1, overwrite=True)
    assert [p.name for p in (theirs / "hr").iterdir()] == ["holiday.png"]
    older = tmp_path / "older"
    _save(older / "hr" / "stale_s001.png", _random_rgb(64, 64))
    (older / "summary.json").write_text("{}")
    extract_patches(tmp_path / "in", older, crop_size=64, step=32, min_size=32, workers=1, overwrite=True)
    assert "stale_s001.png" not in {p.name for p in (older / "hr").iterdir()}
    assert (older / MARKER).is_file()


def test_pool_workers_do_not_inherit_the_callers_sigterm_handler() -> None:
    # A pipeline stage turns SIGTERM into an exception; forked workers inherited that handler and
    # printed its traceback when the pool shut them down.
    from esrgan.data.patches import _worker_pool

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        with _worker_pool(2) as pool:
            assert all(pool.starmap(_sigterm_is_default, [()] * 4))
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_validation_pairs_are_whole_mod_cropped_images(tmp_path: Path) -> None:
    img = _random_rgb(53, 66)
    _save(tmp_path / "val" / "0801.png", img)
    summary = extract_validation(tmp_path / "val", tmp_path / "out", scale=4, workers=1)
    hr = read_image(tmp_path / "out" / "hr" / "0801.png")
    np.testing.assert_array_equal(hr, img[:52, :64])
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "lr" / "0801.png"), imresize(hr, 1 / 4))
    assert summary["kind"] == "validation" and summary["images"] == summary["patches"] == 1


def test_sample_set_extraction_smoke(tmp_path: Path) -> None:
    from esrgan.data import build_sample_dataset

    build_sample_dataset(tmp_path / "sample")
    summary = extract_patches(tmp_path / "sample" / "train", tmp_path / "patches", workers=2)
    # Default 480/240 on 512x512, 451x300, 640x427, 512x600, 741x500 and 640x427 images.
    assert summary["images"] == 6 and summary["patches"] == 19
    assert summary["converted"] == {"smaller_than_crop": 3} and summary["skipped"] == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop_size": 130}, "crop_size 130 must be a multiple of scale 4"),
        ({"scale": 5}, "Input should be 1, 2, 3, 4 or 8"),
        ({"step": 0}, "greater than 0"),
        ({"thresh_size": 480}, "thresh_size 480 must be smaller than crop_size 480"),
        ({"crop": 480}, "Extra inputs are not permitted"),
    ],
)
def test_extract_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ExtractConfig(**kwargs)


def test_extract_config_defaults_are_basicsr() -> None:
    cfg = ExtractConfig()
    assert (cfg.scale, cfg.crop_size, cfg.step, cfg.thresh_size, cfg.workers) == (4, 480, 240, 0, 2)
