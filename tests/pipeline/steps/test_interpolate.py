"""Identical weights give identical files, whatever the file is called and however often it is
written: otherwise a resumed or forced stage invalidates every later DVC stage for nothing."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from esrgan.models import RRDBNet, load_generator, save_generator
from pipeline.steps.interpolate import interpolate_step


def tiny(seed: int) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(num_feat=8, num_block=1, num_grow=4)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", message=".*num_grow.*")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_saving_twice_gives_the_same_bytes(tmp_path: Path, suffix: str) -> None:
    model = tiny(0)
    a = save_generator(model, tmp_path / f"first{suffix}")
    b = save_generator(model, tmp_path / "other" / f"second_name{suffix}")
    assert a.read_bytes() == b.read_bytes()
    save_generator(tiny(1), tmp_path / f"changed{suffix}")
    assert (tmp_path / f"changed{suffix}").read_bytes() != a.read_bytes()  # the bytes do follow the weights
    reloaded = load_generator(a)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in reloaded.state_dict().items())


def test_the_pth_archive_holds_no_file_or_temporary_name(tmp_path: Path) -> None:
    import zipfile

    path = save_generator(tiny(0), tmp_path / "generator.pth")
    names = zipfile.ZipFile(path).namelist()
    assert all(n.startswith("archive/") for n in names), names


def test_interpolating_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    psnr = save_generator(tiny(0), tmp_path / "psnr.pth")
    gan = save_generator(tiny(1), tmp_path / "gan.pth")
    first = interpolate_step(psnr, gan, 0.4, tmp_path / "a" / "alpha_0.4.pth").read_bytes()
    second = interpolate_step(psnr, gan, 0.4, tmp_path / "b" / "alpha_0.4.pth").read_bytes()
    again = interpolate_step(psnr, gan, 0.4, tmp_path / "a" / "alpha_0.4.pth").read_bytes()  # overwrite in place
    assert first == second == again
