"""ONNX export: the exported graph computes what PyTorch computes, at every image size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from esrgan.export import export_onnx, run_onnx
from esrgan.models import RRDBNet, save_generator
from pipeline.cli import main

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TOL = 1e-4


def tiny(scale: int = 4, seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(scale=scale, num_feat=16, num_block=2, num_grow=8).eval()


def torch_out(model: RRDBNet, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def real_lr(h: int = 64, w: int = 80) -> torch.Tensor:
    from skimage import data

    img = data.astronaut()[100 : 100 + h, 150 : 150 + w].astype(np.float32) / 255.0
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_onnx_equals_pytorch_on_random_inputs_of_several_sizes(tmp_path: Path, scale: int) -> None:
    model = tiny(scale)
    path = export_onnx(model, tmp_path / "m.onnx")
    # Sizes other than the export example: height and width are dynamic, and so is the batch.
    for shape in ((1, 3, 12, 20), (2, 3, 32, 8), (1, 3, 36, 28)):
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape)))
        ref, out = torch_out(model, x), run_onnx(path, x)
        assert out.shape == ref.shape == (shape[0], 3, shape[2] * scale, shape[3] * scale)
        assert (out - ref).abs().max().item() < TOL


def test_onnx_equals_pytorch_on_a_real_image(tmp_path: Path) -> None:
    model = tiny()
    x = real_lr()
    out, ref = run_onnx(export_onnx(model, tmp_path / "m.onnx"), x), torch_out(model, x)
    assert out.shape == (1, 3, 256, 320)
    assert (out - ref).abs().max().item() < TOL


def test_onnx_file_declares_dynamic_height_and_width(tmp_path: Path) -> None:
    import onnx

    graph = onnx.load(export_onnx(tiny(), tmp_path / "m.onnx")).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert graph.input[0].name == "lr" and graph.output[0].name == "sr"
    assert dims == ["batch", 3, "height", "width"]


def test_failed_export_keeps_the_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous export")
    with pytest.raises(Exception):  # noqa: B017  (opset 1 is rejected by the exporter)
        export_onnx(tiny(), target, opset=1)
    assert target.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize("layout", ["basicsr.pth", "official.pth", "safetensors"])
def test_cli_exports_any_checkpoint_the_loader_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture, layout: str
) -> None:
    model = tiny(seed=1)
    if layout == "safetensors":
        ckpt = save_generator(model, tmp_path / "g.safetensors")
    elif layout == "basicsr.pth":
        ckpt = save_generator(model, tmp_path / "g.pth")
    else:  # the original ESRGAN repository's key names (RRDB_trunk, trunk_conv, upconv1, HRconv...)
        ckpt = tmp_path / "g.pth"
        torch.save(official_state(model), ckpt)
    out = tmp_path / "out" / "g.onnx"
    assert main(["export", "onnx", str(ckpt), "-o", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(out) and report["bytes"] == out.stat().st_size > 0
    x = real_lr(24, 24)
    assert (run_onnx(out, x) - torch_out(model, x)).abs().max().item() < TOL


def official_state(model: RRDBNet) -> dict[str, torch.Tensor]:
    """``model``'s weights under the key names of xinntao/ESRGAN's RRDB_ESRGAN_x4.pth."""
    rename = {
        "conv_first": "conv_first",
        "conv_body": "trunk_conv",
        "conv_up1": "upconv1",
        "conv_up2": "upconv2",
        "conv_hr": "HRconv",
        "conv_last": "conv_last",
    }
    out = {}
    for key, value in model.state_dict().items():
        head, rest = key.split(".", 1)
        if head == "body":
            idx, rdb, conv, param = rest.split(".")
            out[f"RRDB_trunk.{idx}.{rdb.upper()}.{conv}.{param}"] = value
        else:
            out[f"{rename[head]}.{rest}"] = value
    return out


def test_cli_rejects_a_file_that_is_not_a_generator(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "notes.pth"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "g.onnx"
    assert main(["export", "onnx", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("esrgan: error:") and str(bad) in err and "\n" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("{ckpt}", "export must end in .onnx"),
        ("{dir}/", "is a folder"),
        ("{dir}", "is a folder"),
        ("{existing}", "already exists; pass --overwrite"),
        ("{onnx_input}", "is the input model"),
    ],
    ids=["the-input-checkpoint", "a-folder-with-slash", "a-folder", "an-existing-file", "the-input-itself"],
)
def test_cli_never_replaces_the_input_or_an_existing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, output: str, message: str
) -> None:
    """The issue's `esrgan export onnx copy.pth -o copy.pth`: one line, exit 2, every file as it was."""
    ckpt = save_generator(tiny(seed=1), tmp_path / "copy.pth")
    (tmp_path / "dir").mkdir()
    existing = tmp_path / "old.onnx"
    existing.write_bytes(b"previous export")
    onnx_input = tmp_path / "model.onnx"
    onnx_input.write_bytes(b"an onnx model")  # ONNX is not a loadable input, but never overwrite it either
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    path = output.format(ckpt=ckpt, dir=tmp_path / "dir", existing=existing, onnx_input=onnx_input)
    model = str(onnx_input) if output == "{onnx_input}" else str(ckpt)
    overwrite = ["--overwrite"] if output == "{onnx_input}" else []
    assert main(["export", "onnx", model, "-o", path, *overwrite]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("esrgan: error: ") and message in err[0], err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_cli_overwrite_replaces_an_earlier_export(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = save_generator(tiny(seed=1), tmp_path / "g.pth")
    out = tmp_path / "g.onnx"
    out.write_bytes(b"previous export")
    assert main(["export", "onnx", str(ckpt), "-o", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != b"previous export" and out.stat().st_size > 1000
