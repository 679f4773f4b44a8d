"""Files we write are recognised by spandrel (chaiNNer, ComfyUI) as ESRGAN and give identical output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from esrgan.models import RRDBNet, load_generator, save_generator

spandrel = pytest.importorskip("spandrel")


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_spandrel_loads_our_files_with_identical_output(tmp_path: Path, scale: int, suffix: str) -> None:
    torch.manual_seed(scale)
    ours = RRDBNet(scale=scale, num_feat=16, num_block=2, num_grow=32).eval()
    path = save_generator(ours, tmp_path / f"{scale}x_ours{suffix}")
    desc = spandrel.ModelLoader().load_from_file(path)
    assert desc.architecture.id == "ESRGAN"
    assert desc.scale == scale
    x = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        assert torch.equal(desc.model(x), ours(x))


def test_we_load_what_spandrel_exports(tmp_path: Path) -> None:
    """spandrel's own ESRGAN module stores the old sequential layout; we read it back exactly."""
    torch.manual_seed(0)
    ours = RRDBNet(num_feat=16, num_block=2, num_grow=32).eval()
    desc = spandrel.ModelLoader().load_from_state_dict(ours.state_dict())
    path = tmp_path / "spandrel.pth"
    torch.save(desc.model.state_dict(), path)
    assert any(k.startswith("model.1.sub.") for k in torch.load(path, weights_only=True))
    back = load_generator(path)
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        assert torch.equal(back(x), ours(x))
