"""The ``esrgan upscale`` command, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engines' exports and compiled models go to a temporary cache, not ~/.cache/esrgan."""
    monkeypatch.setenv("ESRGAN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "esrgan-cache"))


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


def test_engines_and_precisions_give_the_same_pictures(model_file: Path, tmp_path: Path) -> None:
    """Every engine over the same rules (grey, RGBA, 16-bit, tiles), within the fidelity bound of torch fp32;
    an exported .onnx runs as well as the checkpoint."""
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (10, 12, 4), dtype=np.uint8)).save(src / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (7, 5), dtype=np.uint8)).save(src / "grey.png")
    Image.fromarray(rng.integers(0, 65535, (6, 9), dtype=np.uint16)).save(src / "deep.png")
    onnx_file = tmp_path / "model.onnx"
    assert run_cli("export", "onnx", model_file, "-o", onnx_file).returncode == 0
    outputs = {}
    for engine, precision, model in [
        ("torch", "fp32", model_file),
        ("onnxruntime", "fp32", onnx_file),
        ("openvino", "auto", model_file),
        ("auto", "auto", onnx_file),
    ]:
        out = tmp_path / f"out-{engine}-{precision}-{model.suffix}"
        result = run_cli(
            "upscale", src, "-m", model, "-o", out, "--tile", "4", "--engine", engine, "--precision", precision
        )
        if result.returncode == 2 and "is not installed" in result.stderr:
            continue
        assert result.returncode == 0, result.stderr[-2000:]
        outputs[engine] = {p.name: np.asarray(Image.open(p)).astype(int) for p in sorted(out.iterdir())}
    reference = outputs["torch"]
    assert sorted(reference) == ["deep_x4.png", "grey_x4.png", "rgba_x4.png"]
    for engine, images in outputs.items():
        for name, pixels in images.items():
            # 8-bit: the fidelity bound (2 levels); 16-bit: auto keeps deep images in fp32, so 2 levels of 65535
            levels = 2
            assert pixels.shape == reference[name].shape, (engine, name)
            assert np.abs(pixels - reference[name]).max() <= levels, (engine, name)


def test_an_engine_that_is_not_installed_is_one_line_and_exit_2(model_file: Path, tmp_path: Path) -> None:
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(img)
    code = "import sys; sys.modules['openvino'] = None\nfrom pipeline.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    args = ["upscale", str(img), "-m", str(model_file), "-o", str(tmp_path / "out")]
    refused = subprocess.run(
        [sys.executable, "-c", code, *args, "--engine", "openvino"], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2
    assert (
        refused.stderr.strip() == "esrgan: error: --engine openvino: openvino is not installed (pip install openvino)"
    )
    assert not (tmp_path / "out").exists()
    # auto goes on with the next engine, saying so in one line under -v
    done = subprocess.run([sys.executable, "-c", code, "-v", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sum("openvino is not installed" in line for line in done.stderr.splitlines()) >= 1
    assert "Traceback" not in done.stderr


def test_a_folder_of_photos_compiles_once(model_file: Path, tmp_path: Path) -> None:
    from esrgan.engines import clear_cache, compile_count
    from pipeline.cli.upscale import upscale_files

    src = tmp_path / "in"
    src.mkdir()
    for i, (h, w) in enumerate([(8, 8), (13, 21), (30, 7)]):
        Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(src / f"p{i}.png")
    clear_cache()
    before = compile_count()
    assert upscale_files([src], str(model_file), tmp_path / "out", engine="onnxruntime") == 0
    assert compile_count() == before + 1
    assert len(list((tmp_path / "out").iterdir())) == 3
