"""The ``esrgan upscale`` command, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_upscales_files_and_folders_and_reports_bad_ones(model_file: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((10, 12, 3), 100, np.uint8)).save(src / "a.png")
    Image.fromarray(np.full((7, 5), 50, np.uint8)).save(src / "b.jpg")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (src / "notes.txt").write_text("not an image")  # ignored when a folder is given
    extra = tmp_path / "extra.png"
    Image.fromarray(np.zeros((3, 3, 4), np.uint8)).save(extra)
    out = tmp_path / "out"

    result = run_cli("upscale", src, extra, "--model", model_file, "-o", out, "--tile", "4")

    assert result.returncode == 1  # broken.png failed, the rest went on
    errors = [line for line in result.stderr.splitlines() if line.startswith("esrgan: error:")]
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["a_x4.png", "b_x4.png", "extra_x4.png"]
    assert Image.open(out / "a_x4.png").size == (48, 40)
    assert Image.open(out / "b_x4.png").mode == "L"
    assert Image.open(out / "extra_x4.png").mode == "RGBA"


def test_never_overwrites_an_input(model_file: Path, tmp_path: Path) -> None:
    img = tmp_path / "photo_x4.png"
    original = np.full((6, 6, 3), 7, np.uint8)
    Image.fromarray(original).save(img)
    # Output folder == input folder and the suffix makes the output name equal to the input's.
    result = run_cli("upscale", img, "--model", model_file, "-o", tmp_path, "--suffix", "", "--overwrite")
    assert result.returncode == 2 and "would overwrite the input" in result.stderr
    assert np.array_equal(np.asarray(Image.open(img)), original)


def test_bad_model_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "model.pth"
    bad.write_text("nope")
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(img)
    result = run_cli("upscale", img, "--model", bad, "-o", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and str(bad) in result.stderr
    assert not (tmp_path / "out").exists()
