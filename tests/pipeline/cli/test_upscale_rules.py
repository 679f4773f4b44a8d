"""``esrgan upscale`` as a hostile-but-fair user runs it: output names, overwrites, bad models and devices.

Each case of issue 13 is one test. They call ``pipeline.cli.main`` in-process (the same code as the
console script, without a torch start-up per case); the exit status is what the script returns.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.cli import main


def png(path: Path, value: int = 100, size: tuple[int, int] = (6, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, list[str]]:
    """Exit status and the ``esrgan: error:`` lines of one CLI call."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("esrgan: error:")]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_inputs_with_one_output_name_are_refused_before_writing(model_file, tmp_path, capsys) -> None:
    a_png, a_jpg = png(tmp_path / "in" / "a.png"), tmp_path / "in" / "a.jpg"
    Image.fromarray(np.full((6, 8, 3), 50, np.uint8)).save(a_jpg)
    png(tmp_path / "in" / "b.png")
    code, errors = run(
        capsys, "upscale", a_png, tmp_path / "in" / "b.png", a_jpg, "-m", model_file, "-o", tmp_path / "out"
    )
    assert code == 2 and len(errors) == 1
    assert str(a_png) in errors[0] and str(a_jpg) in errors[0] and "a_x4.png" in errors[0]
    assert not (tmp_path / "out").exists()  # not even b.png: the run is planned first


def test_empty_suffix_never_replaces_an_existing_file(model_file, tmp_path, capsys) -> None:
    src = png(tmp_path / "in" / "photo.png", 10)
    unrelated = png(tmp_path / "out" / "photo.png", 200)
    before = unrelated.read_bytes()
    code, errors = run(capsys, "upscale", src, "-m", model_file, "-o", tmp_path / "out", "--suffix", "")
    assert code == 2 and errors == [
        f"esrgan: error: {unrelated} already exists; pass --overwrite to replace, or choose another -o"
    ]
    assert unrelated.read_bytes() == before
    # Asked for explicitly, it is replaced (atomically) by the upscaled image.
    assert run(capsys, "upscale", src, "-m", model_file, "-o", tmp_path / "out", "--suffix", "", "--overwrite")[0] == 0
    assert Image.open(unrelated).size == (32, 24)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo.png"]  # no temporary file left


def test_suffix_cannot_leave_the_output_folder(model_file, tmp_path, capsys) -> None:
    src = png(tmp_path / "a" / "b" / "in" / "x.png")
    before = snapshot(tmp_path)
    code, errors = run(
        capsys, "upscale", src, "-m", model_file, "-o", tmp_path / "a" / "b" / "out", "--suffix", "/../../x"
    )
    assert code == 2 and len(errors) == 1 and "path separator" in errors[0] and "/../../x" in errors[0]
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("suffix", "reason"),
    [
        ("_{foo}", "unknown field {foo}; the only field is {scale}"),
        ("_{scale", "not a valid template"),
        ("_{0}", "unknown field {0}"),
        ("_{scale:q}", "bad format for {scale}"),
        ("_{scale:02d}x", "bad format for {scale}"),  # issue 21: no format spec ...
        ("_{scale!r}", "bad format for {scale}"),  # ... and no conversion
        ("_{scale.real}", "unknown field {scale.real}"),
        ("_{}", "unknown field {}"),
        ("_\n", "control characters"),
    ],
)
def test_bad_suffix_templates_are_one_line_errors(model_file, tmp_path, capsys, suffix, reason) -> None:
    src = png(tmp_path / "x.png")
    code, errors = run(capsys, "upscale", src, "-m", model_file, "-o", tmp_path / "out", "--suffix", suffix)
    assert code == 2 and len(errors) == 1 and reason in errors[0]
    assert not (tmp_path / "out").exists()


def test_suffix_template_with_scale_and_braces_works(model_file, tmp_path, capsys) -> None:
    src = png(tmp_path / "x.png")
    assert run(capsys, "upscale", src, "-m", model_file, "-o", tmp_path / "out", "--suffix=-{scale}x{{1}}")[0] == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x-4x{1}.png"]


def test_a_huge_format_spec_is_refused_in_one_short_line(model_file, tmp_path, capsys) -> None:
    """Issue 21 case 9: ``{scale!r:>99999999}`` wrote 100 MB to stderr."""
    src = png(tmp_path / "x.png")
    code = main(
        ["upscale", str(src), "-m", str(model_file), "-o", str(tmp_path / "out"), "--suffix", "{scale!r:>99999999}"]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err) < 300 and err.count("\n") == 1 and err.startswith("esrgan: error: --suffix")
    long_suffix = "_" + "{scale}" * 5000
    code = main(["upscale", str(src), "-m", str(model_file), "-o", str(tmp_path / "out"), "--suffix", long_suffix])
    err = capsys.readouterr().err
    assert code == 2 and len(err) < 400 and err.count("\n") == 1 and "limit of 255" in err
    assert not (tmp_path / "out").exists()


def test_long_input_names_are_written_or_refused_before_writing(model_file, tmp_path, capsys) -> None:
    """Issue 21 case 9: a ~240-character stem made the temporary name too long (traceback, batch lost)."""
    long_ok = png(tmp_path / "in" / f"{'b' * 245}.png")  # output b..b_x4.png: 252 bytes, allowed
    short = png(tmp_path / "in" / "a.png")
    code, errors = run(capsys, "upscale", short, long_ok, "-m", model_file, "-o", tmp_path / "out")
    assert (code, errors) == (0, [])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x4.png", f"{'b' * 245}_x4.png"]

    too_long = png(tmp_path / "in2" / f"{'é' * 125}.png")  # 250 bytes of stem, 257 with _x4.png
    png(tmp_path / "in2" / "c.png")
    code, errors = run(capsys, "upscale", tmp_path / "in2", "-m", model_file, "-o", tmp_path / "out2")
    assert code == 2 and len(errors) == 1 and len(errors[0]) < 300
    assert "the output name would be 257 bytes, over the file system's limit of 255" in errors[0]
    assert errors[0].startswith(f"esrgan: error: {str(too_long)[:40]}")  # names the input (shortened)
    assert not (tmp_path / "out2").exists()  # c.png neither: the run is planned first


def test_an_output_that_cannot_be_written_is_skipped_and_the_rest_written(model_file, tmp_path, capsys) -> None:
    a, b, c = (png(tmp_path / "in" / f"{n}.png") for n in "abc")
    (tmp_path / "out" / "b_x4.png").mkdir(parents=True)  # a folder where the output goes
    code, errors = run(capsys, "upscale", a, b, c, "-m", model_file, "-o", tmp_path / "out", "--overwrite")
    assert code == 1 and len(errors) == 1 and str(b) in errors[0] and "cannot write" in errors[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x4.png", "b_x4.png", "c_x4.png"]
    assert (tmp_path / "out" / "b_x4.png").is_dir() and not any((tmp_path / "out" / "b_x4.png").iterdir())


def test_the_same_file_given_twice_is_upscaled_once(model_file, tmp_path, capsys) -> None:
    src = png(tmp_path / "in" / "x.png")
    assert run(capsys, "upscale", src, tmp_path / "in", "-m", model_file, "-o", tmp_path / "out")[0] == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x_x4.png"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_a_gpu(model_file, tmp_path, capsys) -> None:
    code, errors = run(
        capsys, "upscale", png(tmp_path / "x.png"), "-m", model_file, "-o", tmp_path / "o", "--device", "cuda"
    )
    assert code == 2 and errors == [
        "esrgan: error: --device cuda: CUDA is not available on this machine; use --device cpu"
    ]


def test_unknown_device(model_file, tmp_path, capsys) -> None:
    code, errors = run(
        capsys, "upscale", png(tmp_path / "x.png"), "-m", model_file, "-o", tmp_path / "o", "--device", "tpu"
    )
    assert code == 2 and errors == ["esrgan: error: --device tpu: unknown device; use auto, cpu, cuda, cuda:N or mps"]


def _state(model_file: Path) -> dict[str, torch.Tensor]:
    return dict(torch.load(model_file, weights_only=True)["params_ema"])


def test_nan_weights_are_one_line(model_file, tmp_path, capsys) -> None:
    state = _state(model_file)
    state["conv_hr.weight"] = state["conv_hr.weight"].clone().fill_(float("nan"))
    bad = tmp_path / "nan.pth"
    torch.save({"params_ema": state}, bad)
    code, errors = run(capsys, "upscale", png(tmp_path / "x.png"), "-m", bad, "-o", tmp_path / "o")
    assert code == 2 and errors == [f"esrgan: error: {bad}: weights are not finite (NaN or infinity) in conv_hr.weight"]
    assert not (tmp_path / "o").exists()


def test_missing_key_is_named_in_full(model_file, tmp_path, capsys) -> None:
    state = _state(model_file)
    del state["body.0.rdb3.conv5.weight"]
    bad = tmp_path / "missing.pth"
    torch.save({"params_ema": state}, bad)
    code, errors = run(capsys, "upscale", png(tmp_path / "x.png"), "-m", bad, "-o", tmp_path / "o")
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith(f"esrgan: error: {bad}: tensors do not fit an RRDBNet")
    assert errors[0].endswith("missing body.0.rdb3.conv5.weight")


@pytest.mark.parametrize("content", [b"garbage" * 100, b"\x80\x04 truncated pickle", b"PK\x03\x04 broken zip", b""])
def test_garbage_model_files_never_suggest_weights_only_false(tmp_path, capsys, content) -> None:
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(content)
    code, errors = run(capsys, "upscale", png(tmp_path / "x.png"), "-m", bad, "-o", tmp_path / "o")
    assert code == 2 and len(errors) == 1 and errors[0].startswith(f"esrgan: error: {bad}: ")
    assert "weights_only" not in errors[0]


class _RunsCode:
    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return (os.system, ("true",))


@pytest.mark.parametrize("layout", ["legacy pickle", "torch zip"])
def test_code_executing_pickle_is_refused_by_name(tmp_path, capsys, layout) -> None:
    bad = tmp_path / "evil.pth"
    if layout == "torch zip":
        torch.save({"params_ema": _RunsCode()}, bad)
    else:
        bad.write_bytes(pickle.dumps({"params_ema": _RunsCode()}, protocol=2))
    code, errors = run(capsys, "upscale", png(tmp_path / "x.png"), "-m", bad, "-o", tmp_path / "o")
    assert code == 2 and errors == [f"esrgan: error: {bad}: refused, loading it would run code (posix.system)"]


def test_a_decompression_bomb_input_is_one_line_and_the_rest_is_written(model_file, tmp_path, capsys) -> None:
    from tests.pipeline.registry.test_pyfunc_model_limits import header_only_png

    bomb = tmp_path / "in" / "bomb.png"
    bomb.parent.mkdir()
    bomb.write_bytes(header_only_png(30000, 30000))
    good = png(tmp_path / "in" / "good.png")
    code, errors = run(capsys, "upscale", bomb, good, "-m", model_file, "-o", tmp_path / "out")
    assert code == 1 and len(errors) == 1 and errors[0].startswith(f"esrgan: error: {bomb}: refused, image size")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good_x4.png"]
