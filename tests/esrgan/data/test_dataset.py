"""Paired LR/HR datasets: contract, determinism under a seed, aligned augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from esrgan.data import PairedImageDataset, PairedPatchDataset, augment_pair, imresize


def _smooth_rgb(h: int, w: int, seed: int) -> np.ndarray:
    # Smooth, asymmetric content: bicubic rounding stays tame and every flip is visible.
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / 16.0
    phases = rng.random((3, 2)) * 6
    chans = [np.sin(y * (1 + c * 0.3) + phases[c, 0]) * np.cos(x * 0.7 + phases[c, 1]) + y / h for c in range(3)]
    return np.clip(np.stack(chans, axis=2) * 80 + 110, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pairs")
    for i, (h, w) in enumerate([(64, 64), (96, 64), (64, 128)]):
        hr = _smooth_rgb(h, w, i)
        (root / "hr").mkdir(exist_ok=True)
        (root / "lr").mkdir(exist_ok=True)
        Image.fromarray(hr).save(root / "hr" / f"img{i}.png")
        Image.fromarray(imresize(hr, 1 / 4)).save(root / "lr" / f"img{i}.png")
    return root


def _as_uint8(t: torch.Tensor) -> np.ndarray:
    return np.round(t.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def test_items_follow_the_training_contract(pairs: Path) -> None:
    ds = PairedPatchDataset(pairs / "hr", pairs / "lr", 32, 4, augment=True, seed=0)
    assert len(ds) == 3 and ds.scale == 4
    item = ds[1]
    assert set(item) == {"lr", "hr", "name"} and item["name"] == "img1"
    assert item["lr"].shape == (3, 8, 8) and item["hr"].shape == (3, 32, 32)
    assert item["lr"].dtype == item["hr"].dtype == torch.float32
    assert float(item["hr"].min()) >= 0.0 and float(item["hr"].max()) <= 1.0
    assert len(PairedPatchDataset(pairs, None, 32, 4, length=10)) == 10  # root holding hr/ and lr/
    with pytest.raises(IndexError):
        ds[3]


def test_same_seed_same_items_and_epochs_differ(pairs: Path) -> None:
    a = PairedPatchDataset(pairs / "hr", pairs / "lr", 16, 4, seed=7, length=12)
    b = PairedPatchDataset(pairs / "hr", pairs / "lr", 16, 4, seed=7, length=12, cache_bytes=0, disk_cache=None)
    for i in range(12):
        assert torch.equal(a[i]["hr"], b[i]["hr"]) and torch.equal(a[i]["lr"], b[i]["lr"])
    first = [a[i]["hr"] for i in range(12)]
    a.set_epoch(1)
    assert sum(torch.equal(x, a[i]["hr"]) for i, x in enumerate(first)) < 3
    a.set_epoch(0)
    assert all(torch.equal(x, a[i]["hr"]) for i, x in enumerate(first))
    other_seed = PairedPatchDataset(pairs / "hr", pairs / "lr", 16, 4, seed=8, length=12)
    assert sum(torch.equal(x, other_seed[i]["hr"]) for i, x in enumerate(first)) < 3


def test_batches_do_not_depend_on_worker_count(pairs: Path) -> None:
    ds = PairedPatchDataset(pairs / "hr", pairs / "lr", 16, 4, seed=3, length=8)
    ds.set_epoch(2)

    def batches(workers: int) -> list[dict]:
        return list(DataLoader(ds, batch_size=4, shuffle=False, num_workers=workers))

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 2
    for s, p in zip(serial, parallel, strict=True):
        assert torch.equal(s["lr"], p["lr"]) and torch.equal(s["hr"], p["hr"]) and s["name"] == p["name"]


def test_augmented_crops_stay_aligned(pairs: Path) -> None:
    ds = PairedPatchDataset(pairs / "hr", pairs / "lr", 32, 4, augment=True, seed=1, length=24)
    for i in range(24):
        item = ds[i]
        hr, lr = _as_uint8(item["hr"]), _as_uint8(item["lr"]).astype(int)
        # The LR crop is cut from imresize(whole HR); away from the crop border (the x4 kernel
        # reaches 2 LR pixels) it equals imresize of the augmented HR crop itself.
        again = imresize(hr, 1 / 4).astype(int)
        assert np.abs(again[2:-2, 2:-2] - lr[2:-2, 2:-2]).max() <= 1


def test_whole_image_crops_commute_with_imresize_and_cover_all_orientations(pairs: Path) -> None:
    # patch_size == image size: the crop is the whole image, so LR must equal imresize(HR) everywhere.
    ds = PairedPatchDataset(pairs / "hr", pairs / "lr", 64, 4, augment=True, seed=5, length=48)
    hr0 = np.asarray(Image.open(pairs / "hr" / "img0.png"))
    seen = set()
    for i in range(0, 48, 3):  # file img0
        item = ds[i]
        hr, lr = _as_uint8(item["hr"]), _as_uint8(item["lr"]).astype(int)
        assert np.abs(imresize(hr, 1 / 4).astype(int) - lr).max() <= 1
        seen.add(next(f for f in _orientations() if np.array_equal(augment_pair(hr0, *f), hr)))
    assert len(seen) >= 6  # flips and transposes are actually applied
    plain = PairedPatchDataset(pairs / "hr", pairs / "lr", 64, 4, augment=False, seed=5, length=3)
    np.testing.assert_array_equal(_as_uint8(plain[0]["hr"]), hr0)


def _orientations() -> list[tuple[bool, bool, bool]]:
    return [(h, v, t) for h in (False, True) for v in (False, True) for t in (False, True)]


def test_paired_image_dataset_returns_whole_pairs(pairs: Path) -> None:
    ds = PairedImageDataset(pairs / "hr", pairs / "lr")
    assert len(ds) == 3 and ds.scale == 4
    item = ds[2]
    assert item["name"] == "img2" and item["hr"].shape == (3, 64, 128) and item["lr"].shape == (3, 16, 32)
    np.testing.assert_array_equal(_as_uint8(item["hr"]), np.asarray(Image.open(pairs / "hr" / "img2.png")))


def test_clear_errors_for_inconsistent_folders(pairs: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"img0.png: 64x64 is smaller than patch_size 96"):
        PairedPatchDataset(pairs / "hr", pairs / "lr", 96, 4)
    with pytest.raises(ValueError, match=r"HR 64x64 is not x2 of LR 16x16"):
        PairedPatchDataset(pairs / "hr", pairs / "lr", 32, 2)
    with pytest.raises(ValueError, match="positive multiple of scale"):
        PairedPatchDataset(pairs / "hr", pairs / "lr", 30, 4)
    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "hr" / "a.png")
    with pytest.raises(ValueError, match=r"lr: 1 unpaired file\(s\), e.g. no a.png"):
        PairedImageDataset(tmp_path / "hr", tmp_path / "lr")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        PairedImageDataset(tmp_path / "missing", tmp_path / "lr")
