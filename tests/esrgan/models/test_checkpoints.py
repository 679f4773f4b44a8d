"""Loading and saving generators in every layout the ESRGAN ecosystem uses."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from esrgan.models import CheckpointError, RRDBNet, infer_config, load_generator, save_generator


@pytest.fixture
def model() -> RRDBNet:
    torch.manual_seed(1)
    return RRDBNet(num_feat=16, num_block=2, num_grow=8).eval()


def same_output(a: torch.nn.Module, b: torch.nn.Module, size: int = 12) -> bool:
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        return torch.equal(a(x), b(x))


def to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BasicSR names -> xinntao/ESRGAN names, written independently of the loader's mapping."""
    out = {}
    for k, v in state.items():
        k = re.sub(r"^body\.(\d+)\.rdb(\d)\.", r"RRDB_trunk.\1.RDB\2.", k)
        k = k.replace("conv_body.", "trunk_conv.").replace("conv_up1.", "upconv1.").replace("conv_up2.", "upconv2.")
        out[k.replace("conv_hr.", "HRconv.")] = v
    return out


def to_sequential(state: dict[str, torch.Tensor], num_block: int) -> dict[str, torch.Tensor]:
    """BasicSR names -> the old ``model.N`` sequential layout (x4: up convs at 3 and 6, HR at 8, last at 10)."""
    top = {
        "conv_first": "model.0",
        "conv_body": f"model.1.sub.{num_block}",
        "conv_up1": "model.3",
        "conv_up2": "model.6",
        "conv_hr": "model.8",
        "conv_last": "model.10",
    }
    out = {}
    for k, v in state.items():
        m = re.match(r"^body\.(\d+)\.rdb(\d)\.conv(\d)\.(weight|bias)$", k)
        if m:
            out[f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{m[4]}"] = v
        else:
            name, kind = k.rsplit(".", 1)
            out[f"{top[name]}.{kind}"] = v
    return out


def test_infers_architecture_from_shapes(model: RRDBNet) -> None:
    assert infer_config(model.state_dict()) == model.config


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_infers_every_scale(scale: int) -> None:
    m = RRDBNet(scale=scale, num_feat=8, num_block=3, num_grow=4)
    assert load_generator(m.state_dict()).config == m.config


def test_loads_official_esrgan_layout(model: RRDBNet, tmp_path: Path) -> None:
    path = tmp_path / "RRDB_ESRGAN_x4.pth"
    torch.save(to_official(model.state_dict()), path)
    loaded = load_generator(path)
    assert loaded.config == model.config
    assert same_output(loaded, model)


def test_loads_old_sequential_layout(model: RRDBNet, tmp_path: Path) -> None:
    path = tmp_path / "4x_community.pth"
    torch.save(to_sequential(model.state_dict(), model.num_block), path)
    loaded = load_generator(path)
    assert loaded.config == model.config
    assert same_output(loaded, model)


def test_prefers_params_ema_over_params(model: RRDBNet, tmp_path: Path) -> None:
    other = RRDBNet(num_feat=16, num_block=2, num_grow=8)
    path = tmp_path / "net_g.pth"
    torch.save({"params": other.state_dict(), "params_ema": model.state_dict()}, path)
    assert same_output(load_generator(path), model)
    torch.save({"params": other.state_dict()}, path)
    assert same_output(load_generator(path), other)


def test_loads_project_training_checkpoint_and_ddp_prefix(model: RRDBNet) -> None:
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}
    ckpt = {"iteration": 7, "generator": wrapped, "discriminator": {"features.0.weight": torch.zeros(1)}}
    assert same_output(load_generator(ckpt), model)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_and_load_round_trip(model: RRDBNet, tmp_path: Path, suffix: str) -> None:
    path = save_generator(model, tmp_path / f"g{suffix}")
    assert same_output(load_generator(path), model)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    if suffix == ".pth":  # growth 8 is written padded to spandrel's 32, the true growth beside it
        raw = torch.load(path, weights_only=True)
        assert list(raw) == ["params_ema", "esrgan_num_grow"] and "conv_body.weight" in raw["params_ema"]


def test_rejects_a_network_that_is_not_rrdbnet(tmp_path: Path) -> None:
    import torchvision

    path = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not an RRDBNet") and "\n" not in message
    assert "conv_first.weight" in message


def test_rejects_wrong_shapes_with_one_line(model: RRDBNet) -> None:
    state = model.state_dict()
    state["body.1.rdb1.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(CheckpointError, match="do not fit an RRDBNet") as err:
        load_generator(state)
    assert "\n" not in str(err.value)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_refuses_a_pickle_that_would_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"params_ema": _RunsCode(marker)}, fh)
    with pytest.raises(CheckpointError, match="refused") as err:
        load_generator(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04 truncated zip"])
def test_garbage_files_give_one_line_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_garbage_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_generator(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        load_generator(tmp_path / "nope.pth")


def test_failed_save_keeps_the_previous_file(model: RRDBNet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "g.pth"
    torch.save({"params_ema": model.state_dict()}, path)
    before = path.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_generator(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.pth"]
