"""``esrgan train psnr|gan`` and ``esrgan interpolate`` on a tiny config, as real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from esrgan.models import load_generator
from tests._training_helpers import make_pairs, tiny_config
from tests.e2e.project import run


def test_train_both_stages_then_interpolate(tmp_path: Path) -> None:
    patches = tmp_path / "patches"
    make_pairs(patches / "train", count=4, hr_size=128)
    make_pairs(patches / "val", count=1, hr_size=64, seed=1)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(runtime={"device": "cpu", "seed": 0})))

    psnr = run(
        ["esrgan", "train", "psnr", "-c", str(config), "--patches", str(patches), "-o", str(tmp_path / "psnr")],
        tmp_path,
    )
    assert psnr.returncode == 0, psnr.stderr[-2000:]
    psnr_result = json.loads(psnr.stdout)
    assert psnr_result["iterations"] == 6 and "psnr_y" in psnr_result["metrics"]

    no_init = run(
        ["esrgan", "train", "gan", "-c", str(config), "--patches", str(patches), "-o", str(tmp_path / "g")], tmp_path
    )
    assert no_init.returncode == 2 and "--init" in no_init.stderr

    gan = run(
        [
            "esrgan",
            "train",
            "gan",
            "-c",
            str(config),
            "--patches",
            str(patches),
            "-o",
            str(tmp_path / "gan"),
            "--init",
            psnr_result["generator_path"],
        ],
        tmp_path,
    )
    assert gan.returncode == 0, gan.stderr[-2000:]
    gan_path = json.loads(gan.stdout)["generator_path"]

    out = tmp_path / "interp"
    interp = run(
        [
            "esrgan",
            "interpolate",
            "--psnr",
            psnr_result["generator_path"],
            "--gan",
            gan_path,
            "--alphas",
            "0,0.5,1",
            "-o",
            str(out),
        ],
        tmp_path,
    )
    assert interp.returncode == 0, interp.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["alpha_0.0.pth", "alpha_0.5.pth", "alpha_1.0.pth"]
    a, b = load_generator(psnr_result["generator_path"]).state_dict(), load_generator(gan_path).state_dict()
    mid = load_generator(out / "alpha_0.5.pth").state_dict()
    assert all(torch.allclose(mid[k], (a[k] + b[k]) / 2, atol=1e-6) for k in a)

    bad = run(
        ["esrgan", "interpolate", "--psnr", "x.pth", "--gan", "y.pth", "--alphas", "0,a", "-o", str(out)], tmp_path
    )
    assert bad.returncode == 2 and "--alphas" in bad.stderr
