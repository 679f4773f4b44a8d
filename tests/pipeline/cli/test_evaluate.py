"""``esrgan evaluate``: a JSON report for a generator and the bicubic baseline on an HR folder."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from esrgan.models import RRDBNet, save_generator
from tests.e2e.project import run


def test_evaluate_writes_a_report_and_skips_non_images(tmp_path: Path) -> None:
    hr = tmp_path / "Set5"
    hr.mkdir()
    rng = np.random.default_rng(0)
    for name in ("baby.png", "bird.png"):
        smooth = np.kron(rng.random((13, 13, 3)), np.ones((8, 8, 1)))[:101, :99]  # odd sizes: mod-crop
        Image.fromarray((smooth * 255).astype(np.uint8)).save(hr / name)
    (hr / "readme.txt").write_text("not an image")
    torch.manual_seed(0)
    model = RRDBNet(num_feat=8, num_block=1, num_grow=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        save_generator(model, tmp_path / "g.pth")

    result = run(
        [
            "esrgan",
            "evaluate",
            "--model",
            str(tmp_path / "g.pth"),
            "--data",
            str(hr),
            "--metrics",
            "psnr_y,ssim_y,psnr_rgb",
            "-o",
            str(tmp_path / "report.json"),
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert [img["name"] for img in report["per_image"]] == ["baby.png", "bird.png"]
    assert report["per_image"][0]["cropped_shape"] == [100, 96]
    assert report["bicubic"]["mean"]["psnr_y"] > report["model"]["mean"]["psnr_y"]  # untrained model
    summary = json.loads(result.stdout)
    assert summary["bicubic"]["psnr_y"] == report["bicubic"]["mean"]["psnr_y"]

    missing = run(["esrgan", "evaluate", "--data", str(tmp_path / "nope")], tmp_path)
    assert missing.returncode == 2 and "nope" in missing.stderr and missing.stderr.count("\n") == 1
