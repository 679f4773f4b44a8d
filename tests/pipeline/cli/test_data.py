"""``esrgan data sample|import``: the DVC-tracked HR dataset is rebuilt or replaced, never lost."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.e2e.project import REPO, run

pytestmark = pytest.mark.slow


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        assert run(cmd, root).returncode == 0
    return root


def md5_of(dvc_file: Path) -> str:
    return yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"]


def test_sample_rebuild_matches_the_committed_data_dvc(repo: Path) -> None:
    result = run(["esrgan", "data", "sample"], repo)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"] == 8
    assert md5_of(repo / "data.dvc") == md5_of(REPO / "data.dvc")
    again = run(["esrgan", "data", "sample"], repo)
    assert json.loads(again.stdout)["status"] == "unchanged"


def test_import_refuses_to_replace_without_force_and_keeps_the_old_data(repo: Path, tmp_path: Path) -> None:
    assert run(["esrgan", "data", "sample"], repo).returncode == 0
    before = md5_of(repo / "data.dvc")
    src = tmp_path / "div2k"
    src.mkdir()
    for i in range(5):
        Image.fromarray(np.full((64, 64, 3), i * 40, np.uint8)).save(src / f"{i:04d}.png")

    refused = run(["esrgan", "data", "import", str(src)], repo)
    assert refused.returncode == 2
    assert "holds a different dataset" in refused.stderr and refused.stderr.count("\n") == 1
    assert md5_of(repo / "data.dvc") == before and (repo / "data" / "train" / "astronaut.png").is_file()

    done = run(["esrgan", "data", "import", str(src), "--force", "--val-fraction", "0.2"], repo)
    assert done.returncode == 0, done.stderr
    assert md5_of(repo / "data.dvc") != before
    assert len(list((repo / "data" / "train").iterdir())) == 4 and len(list((repo / "data" / "val").iterdir())) == 1
    aside = [p for p in repo.iterdir() if p.name.startswith("data.replaced-")]
    assert len(aside) == 1 and (aside[0] / "train" / "astronaut.png").is_file()
    assert sorted(p.name for p in src.iterdir()) == [f"{i:04d}.png" for i in range(5)]  # source untouched
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    assert "data.dvc" in status


def test_holdout_folder_evaluates_as_it_is(tmp_path: Path) -> None:
    out = tmp_path / "holdout"
    made = run(["esrgan", "data", "holdout", str(out)], tmp_path)
    assert made.returncode == 0, made.stderr
    images = json.loads(made.stdout)["images"]
    assert len(images) == 9 and all(i["licence"] for i in images)
    report = tmp_path / "bicubic.json"
    done = run(["esrgan", "evaluate", "--data", str(out), "--metrics", "psnr_y", "-o", str(report)], tmp_path)
    assert done.returncode == 0, done.stderr
    full = json.loads(report.read_text())
    assert full["skipped"] == [] and full["bicubic"]["count"]["psnr_y"] == 9
    assert 20.0 < full["bicubic"]["mean"]["psnr_y"] < 35.0
