"""evaluate_folder / write_report: numbers equal the metrics computed directly, and the JSON schema."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from esrgan.data import imresize, mod_crop
from esrgan.evaluation import METRICS, BaselineMismatch, evaluate_folder, write_report
from esrgan.imageio import read_image, write_image
from esrgan.inference import upscale
from esrgan.metrics import clear_cache, niqe, psnr, ssim
from esrgan.models import RRDBNet

FAST_METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "niqe", "lpips_alex", "stlpips_alex")


@pytest.fixture(autouse=True)
def _offline_torch_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no LPIPS trunks, deterministically


@pytest.fixture(scope="module")
def model() -> RRDBNet:
    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_block=1, num_grow=4).eval()
    with torch.no_grad():  # mid-grey bias: untrained outputs would otherwise clamp to flat black
        net.conv_last.bias.fill_(0.5)
    return net


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Set5-like folder: natural crops (one not a multiple of 4, one grey), a tiny one, a flat one, junk."""
    folder = tmp_path_factory.mktemp("data") / "Set3"
    folder.mkdir()
    write_image(folder / "cat.png", skimage.data.chelsea()[:118, :130])  # mod-crop to 116x128
    write_image(folder / "coins.png", skimage.data.coins()[:104, :112])  # grey, 8-bit
    write_image(folder / "tiny.png", skimage.data.astronaut()[:40, :44])  # too small for NIQE
    write_image(folder / "flat.png", np.full((24, 24, 3), 90, dtype=np.uint8))  # bicubic == HR exactly
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "sub").mkdir()
    return folder


@pytest.fixture(scope="module")
def fast_report(model: RRDBNet, hr_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One evaluation shared by the tests that only read it (ST-LPIPS on CPU is the slow part)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
        clear_cache()
        return evaluate_folder(model, hr_dir, scale=4, metrics=FAST_METRICS, progress=False)


def _load_rgb(path: Path) -> np.ndarray:
    img = read_image(path)
    return np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img


def test_report_numbers_equal_direct_computation(model: RRDBNet, hr_dir: Path, fast_report: dict) -> None:
    report = fast_report

    assert [p["name"] for p in report["per_image"]] == ["cat.png", "coins.png", "flat.png", "tiny.png"]
    assert {s["name"] for s in report["skipped"]} == {"notes.txt", "broken.png", "sub"}
    cat = report["per_image"][0]
    assert cat["hr_shape"] == [118, 130] and cat["cropped_shape"] == [116, 128]

    for entry in report["per_image"]:
        hr = mod_crop(_load_rgb(hr_dir / entry["name"]), 4)
        lr = imresize(hr, 1 / 4)
        bicubic = imresize(lr, 4)
        sr = upscale(model, lr)
        expected_bic = psnr(bicubic, hr, 4)
        if math.isinf(expected_bic):
            assert entry["bicubic"]["psnr_y"] is None
        else:
            assert entry["bicubic"]["psnr_y"] == pytest.approx(expected_bic, abs=1e-9)
        assert entry["model"]["psnr_y"] == pytest.approx(psnr(sr, hr, 4), abs=1e-9)
        assert entry["model"]["psnr_rgb"] == pytest.approx(psnr(sr, hr, 4, y_channel=False), abs=1e-9)
        assert entry["model"]["ssim_y"] == pytest.approx(ssim(sr, hr, 4), abs=1e-12)
        assert entry["bicubic"]["ssim_y"] == pytest.approx(ssim(bicubic, hr, 4), abs=1e-12)

    coins = report["per_image"][1]
    hr = mod_crop(_load_rgb(hr_dir / "coins.png"), 4)
    assert coins["bicubic"]["niqe"] == pytest.approx(niqe(imresize(imresize(hr, 1 / 4), 4), 4), abs=1e-12)

    # Means are over the images that have a value; counts say how many.
    bic = report["bicubic"]
    values = [p["bicubic"]["psnr_y"] for p in report["per_image"] if p["bicubic"]["psnr_y"] is not None]
    assert bic["count"]["psnr_y"] == 3 and bic["mean"]["psnr_y"] == pytest.approx(np.mean(values), abs=1e-12)
    assert report["model"]["count"]["ssim_y"] == 4


def test_unavailable_metrics_are_null_with_reasons(fast_report: dict) -> None:
    report = fast_report
    by_name = {p["name"]: p for p in report["per_image"]}

    assert by_name["flat.png"]["bicubic"]["psnr_y"] is None  # bicubic of a flat image is exact
    assert "inf" in by_name["flat.png"]["unavailable"]["bicubic"]["psnr_y"]
    assert by_name["tiny.png"]["model"]["niqe"] is None
    assert "96x96" in by_name["tiny.png"]["unavailable"]["model"]["niqe"]
    assert by_name["cat.png"]["model"]["niqe"] > 0

    for section in ("model", "bicubic"):
        summary = report[section]
        assert summary["mean"]["lpips_alex"] is None and summary["count"]["lpips_alex"] == 0
        assert "alexnet-owt-7be5be79.pth" in summary["unavailable"]["lpips_alex"]
        assert summary["count"]["niqe"] == 2  # cat and coins; tiny too small, flat undefined
        assert summary["unavailable"]["niqe"].startswith("missing for 2 of 4 images")
        assert summary["count"]["stlpips_alex"] == 4 and summary["mean"]["stlpips_alex"] >= 0
    assert report["model"]["count"]["psnr_y"] == 4  # a random network never reproduces HR exactly


def test_report_schema_and_json_round_trip(model: RRDBNet, hr_dir: Path, tmp_path: Path) -> None:
    report = evaluate_folder(model, hr_dir, scale=4, metrics=("psnr_y", "ssim_y"), progress=False, model_name="tiny")
    assert set(report) == {
        "schema_version",
        "hr_dir",
        "scale",
        "tile",
        "metrics",
        "conventions",
        "model",
        "bicubic",
        "per_image",
        "skipped",
    }
    assert report["schema_version"] == 1 and report["scale"] == 4 and report["metrics"] == ["psnr_y", "ssim_y"]
    assert report["model"]["name"] == "tiny" and report["bicubic"]["name"] == "bicubic"
    assert set(report["model"]) == {"name", "mean", "count", "unavailable"}
    conventions = report["conventions"]
    assert conventions["crop_border"] == 4
    assert "BT.601" in conventions["psnr_y"] and "65.481" in conventions["psnr_y"]
    assert "MATLAB bicubic" in conventions["lr"] and "uint8" in conventions["rounding"]
    assert set(report["per_image"][0]) == {
        "name",
        "hr_shape",
        "cropped_shape",
        "hr_sha256",
        "model",
        "bicubic",
        "unavailable",
    }

    path = write_report(report, tmp_path / "out" / "metrics.json")
    assert json.loads(path.read_text()) == report
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temporary file


def test_bicubic_only_and_progress_bar(hr_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = evaluate_folder(None, hr_dir, scale=4, metrics=("psnr_y",), progress=True)
    assert report["model"]["name"] == "bicubic"
    assert report["model"]["mean"] == report["bicubic"]["mean"]
    hr = mod_crop(_load_rgb(hr_dir / "cat.png"), 4)
    assert report["per_image"][0]["model"]["psnr_y"] == pytest.approx(
        psnr(imresize(imresize(hr, 0.25), 4), hr, 4), abs=1e-9
    )
    err = capsys.readouterr().err
    assert "evaluate Set3" in err
    assert "skipping notes.txt: not an image file\n" in err
    assert "skipping broken.png: " in err


def test_a_reused_bicubic_baseline_gives_the_same_report(model: RRDBNet, hr_dir: Path) -> None:
    direct = evaluate_folder(model, hr_dir, scale=4, metrics=FAST_METRICS, progress=False)
    baseline = evaluate_folder(None, hr_dir, scale=4, metrics=FAST_METRICS, progress=False)
    baseline = json.loads(json.dumps(baseline))  # as read back from its file
    reused = evaluate_folder(model, hr_dir, scale=4, metrics=FAST_METRICS, progress=False, baseline=baseline)
    assert reused == direct
    subset = evaluate_folder(model, hr_dir, scale=4, metrics=("psnr_y",), progress=False, baseline=baseline)
    assert subset["bicubic"]["mean"] == {"psnr_y": direct["bicubic"]["mean"]["psnr_y"]}


def test_a_stale_or_foreign_baseline_is_refused(model: RRDBNet, hr_dir: Path, tmp_path: Path) -> None:
    baseline = evaluate_folder(None, hr_dir, scale=4, metrics=("psnr_y",), progress=False)

    def refused(folder: Path, base: dict, **kwargs: object) -> str:
        with pytest.raises(BaselineMismatch) as err:
            evaluate_folder(model, folder, progress=False, baseline=base, **{"metrics": ("psnr_y",), **kwargs})
        assert "\n" not in str(err.value)
        return str(err.value)

    assert "lacks the metrics ['ssim_y']" in refused(hr_dir, baseline, metrics=("psnr_y", "ssim_y"))
    at_x2 = evaluate_folder(None, hr_dir, scale=2, metrics=("psnr_y",), progress=False)
    assert "other settings (scale 2)" in refused(hr_dir, at_x2)
    with_model = evaluate_folder(model, hr_dir, scale=4, metrics=("psnr_y",), progress=False)
    assert "not a bicubic-only evaluation report" in refused(hr_dir, with_model)

    changed = tmp_path / "changed"
    changed.mkdir()
    for p in hr_dir.glob("*.png"):
        (changed / p.name).write_bytes(p.read_bytes())
    img = read_image(changed / "cat.png")
    img[10, 10] ^= 1
    write_image(changed / "cat.png", img)
    message = refused(changed, baseline)
    assert message.startswith(f"{changed / 'cat.png'}: other pixels than measured by the bicubic baseline")
    write_image(changed / "zebra.png", img)
    (changed / "cat.png").unlink()
    (changed / "cat.png").write_bytes((hr_dir / "cat.png").read_bytes())
    assert refused(changed, baseline).startswith(f"{changed / 'zebra.png'}: not measured by the bicubic baseline")


def test_tiled_upscaling_is_used(model: RRDBNet, hr_dir: Path) -> None:
    whole = evaluate_folder(model, hr_dir, scale=4, metrics=("psnr_y",), progress=False)
    tiled = evaluate_folder(model, hr_dir, scale=4, tile=8, metrics=("psnr_y",), progress=False)
    assert tiled["tile"] == 8
    # Tiles with 16 px of context on a 1-block network reproduce the whole-image output.
    assert tiled["model"]["mean"]["psnr_y"] == pytest.approx(whole["model"]["mean"]["psnr_y"], abs=1e-6)


def test_argument_errors(model: RRDBNet, hr_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate_folder(model, hr_dir, metrics=("psnr",), progress=False)
    with pytest.raises(ValueError, match="x4"):
        evaluate_folder(model, hr_dir, scale=2, progress=False)
    with pytest.raises(NotADirectoryError):
        evaluate_folder(model, hr_dir / "cat.png", progress=False)


@pytest.mark.slow
def test_every_metric_by_default(model: RRDBNet, tmp_path: Path) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    write_image(folder / "cat.png", skimage.data.chelsea()[:112, :112])
    report = evaluate_folder(model, folder, progress=False)
    assert report["metrics"] == list(METRICS)
    means = report["model"]["mean"]
    assert means["lpips_alex"] is None and means["lpips_vgg"] is None
    assert means["stlpips_alex"] > 0 and means["stlpips_vgg"] > 0
    assert means["niqe"] > 0 and 0 < means["ssim_y"] < 1


def test_evaluation_reads_images_as_training_does(tmp_path: Path) -> None:
    """16-bit and transparent photos are scored on the 8-bit RGB that training would cut patches from
    (esrgan.data.to_rgb8), not rejected or with their alpha dropped."""
    from esrgan.data import to_rgb8

    rng = np.random.default_rng(0)
    deep = (skimage.data.astronaut()[:64, :64].astype(np.uint16) * 257 + rng.integers(0, 200, (64, 64, 3))).astype(
        np.uint16
    )
    rgba = np.dstack([skimage.data.astronaut()[64:128, :64], np.full((64, 64), 128, np.uint8)])
    raw, as_trained = tmp_path / "raw", tmp_path / "rgb8"
    for name, image in (("deep.png", deep), ("half_transparent.png", rgba)):
        write_image(raw / name, image)
        write_image(as_trained / name, to_rgb8(image)[0])
    got = evaluate_folder(None, raw, metrics=("psnr_y", "psnr_rgb"), progress=False)
    want = evaluate_folder(None, as_trained, metrics=("psnr_y", "psnr_rgb"), progress=False)
    assert got["skipped"] == [] and len(got["per_image"]) == 2
    assert [r["model"] for r in got["per_image"]] == [r["model"] for r in want["per_image"]]
    # Dropping the alpha instead would score the colours under the transparency: a different number.
    write_image(tmp_path / "dropped" / "half_transparent.png", rgba[..., :3])
    dropped = evaluate_folder(None, tmp_path / "dropped", metrics=("psnr_y",), progress=False)
    assert dropped["per_image"][0]["model"]["psnr_y"] != got["per_image"][1]["model"]["psnr_y"]
