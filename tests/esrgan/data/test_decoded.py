"""The decoded, memory-mapped pair cache: same items as PNG, built once, shared, rebuilt on change, optional."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from esrgan.data import PairedImageDataset, PairedPatchDataset, imresize
from esrgan.data import decoded as decoded_module
from esrgan.data.dataset import _load_rgb
from esrgan.data.decoded import CACHE_ENV, INDEX_FILE, build, default_root


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "patches"
    for sub in ("hr", "lr"):
        (root / sub).mkdir(parents=True)
    for i, (h, w) in enumerate([(48, 48), (64, 48), (48, 80), (56, 56)]):
        hr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(hr).save(root / "hr" / f"p{i}.png")
        Image.fromarray(imresize(hr, 1 / 4)).save(root / "lr" / f"p{i}.png")
    # A greyscale pair: the cache holds what the loader yields (RGB), not the file's channels.
    grey = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    Image.fromarray(grey).save(root / "hr" / "p4.png")
    Image.fromarray(imresize(grey, 1 / 4)).save(root / "lr" / "p4.png")
    return root


def _items(ds: PairedPatchDataset | PairedImageDataset) -> list[dict[str, torch.Tensor]]:
    return [ds[i] for i in range(len(ds))]  # type: ignore[misc]


def _equal(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> bool:
    return all(torch.equal(x["hr"], y["hr"]) and torch.equal(x["lr"], y["lr"]) for x, y in zip(a, b, strict=True))


def _caches(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / INDEX_FILE).is_file())


def test_cached_items_equal_decoded_items_and_the_cache_is_reused(pairs: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    plain = PairedPatchDataset(pairs, patch_size=32, seed=3, length=20, cache_bytes=0, disk_cache=None)
    cached = PairedPatchDataset(pairs, patch_size=32, seed=3, length=20, cache_bytes=0, disk_cache=root)
    (folder,) = _caches(root)
    index = json.loads((folder / INDEX_FILE).read_text())
    assert index["hr"][4] == [48, 48, 3] and index["lr"][1] == [16, 12, 3]
    assert (folder / "hr.u8").stat().st_size == sum(h * w * c for h, w, c in index["hr"])
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        assert _equal(_items(plain), _items(cached))
    built = (folder / "hr.u8").stat().st_mtime_ns
    again = PairedPatchDataset(pairs, patch_size=32, seed=3, length=20, cache_bytes=0, disk_cache=root)
    assert _caches(root) == [folder] and (folder / "hr.u8").stat().st_mtime_ns == built  # opened, not rebuilt
    assert again.sizes == cached.sizes == plain.sizes
    plain.set_epoch(0)
    assert _equal(_items(again), _items(plain))
    # Whole images (validation) read the same cache.
    whole = PairedImageDataset(pairs, cache_bytes=0, disk_cache=root)
    assert _caches(root) == [folder]
    assert _equal(_items(whole), _items(PairedImageDataset(pairs, disk_cache=None)))


def test_workers_read_the_map_and_batches_do_not_change(pairs: Path, tmp_path: Path) -> None:
    ds = PairedPatchDataset(pairs, patch_size=32, seed=1, length=12, cache_bytes=0, disk_cache=tmp_path / "cache")
    serial = list(DataLoader(ds, batch_size=4, num_workers=0))
    forked = list(DataLoader(ds, batch_size=4, num_workers=2))
    for a, b in zip(serial, forked, strict=True):
        assert torch.equal(a["hr"], b["hr"]) and torch.equal(a["lr"], b["lr"])
    # A spawned worker gets the dataset pickled: the map must travel as a file name, not as pixels.
    (folder,) = _caches(tmp_path / "cache")
    blob = pickle.dumps(ds)
    assert len(blob) < (folder / "hr.u8").stat().st_size // 4
    assert _equal(_items(pickle.loads(blob)), _items(ds))


def test_a_changed_folder_gets_a_new_cache_and_the_old_one_goes(pairs: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    PairedPatchDataset(pairs, patch_size=32, cache_bytes=0, disk_cache=root)
    (old,) = _caches(root)
    hr = np.zeros((48, 48, 3), np.uint8)
    Image.fromarray(hr).save(pairs / "hr" / "p0.png")
    Image.fromarray(imresize(hr, 1 / 4)).save(pairs / "lr" / "p0.png")
    os.utime(pairs / "hr" / "p0.png", ns=(1, 1))  # even an equal size is told apart by the time
    ds = PairedPatchDataset(pairs, patch_size=32, augment=False, cache_bytes=0, disk_cache=root)
    (new,) = _caches(root)
    assert new != old and not old.exists()
    assert int(ds[0]["hr"].abs().sum()) == 0


def test_a_leftover_is_replaced_only_when_it_holds_nothing_but_cache_files(
    pairs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "cache"
    reference = _items(PairedImageDataset(pairs, disk_cache=None))
    PairedImageDataset(pairs, cache_bytes=0, disk_cache=root)
    (folder,) = _caches(root)
    (folder / "hr.u8").write_bytes(b"torn")  # an interrupted copy: ours, replaced
    assert _equal(_items(PairedImageDataset(pairs, cache_bytes=0, disk_cache=root)), reference)
    assert (folder / "hr.u8").stat().st_size > 4
    for name in (INDEX_FILE, "hr.u8", "lr.u8"):
        (folder / name).unlink()
    (folder / "notes.txt").write_text("someone's")  # a folder of that name that is not ours: kept
    with caplog.at_level(logging.WARNING):
        ds = PairedImageDataset(pairs, cache_bytes=0, disk_cache=root)
    assert (folder / "notes.txt").read_text() == "someone's" and not (folder / INDEX_FILE).exists()
    assert "notes.txt" in caplog.text and "left as is" in caplog.text
    assert _equal(_items(ds), reference)  # decoded per item instead
    assert not list(root.glob(".*building*"))


def test_no_room_or_no_permission_falls_back_to_decoding_per_item(
    pairs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    plain = _items(PairedPatchDataset(pairs, patch_size=32, length=10, cache_bytes=0, disk_cache=None))
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="esrgan.data.decoded"):
        ds = PairedPatchDataset(pairs, patch_size=32, length=10, cache_bytes=0, disk_cache=blocked / "cache")
    assert "cannot write the decoded cache" in caplog.text and "decoding per item" in caplog.text
    assert _equal(_items(ds), plain)
    caplog.clear()
    monkeypatch.setattr(decoded_module, "FREE_MARGIN_BYTES", 1 << 62)  # no disk is that large
    with caplog.at_level(logging.WARNING, logger="esrgan.data.decoded"):
        ds = PairedPatchDataset(pairs, patch_size=32, length=10, cache_bytes=0, disk_cache=tmp_path / "full")
    assert "GB free, the decoded cache needs" in caplog.text and CACHE_ENV in caplog.text
    assert _equal(_items(ds), plain) and not _caches(tmp_path / "full")


def test_small_sets_stay_in_memory_and_the_environment_picks_the_folder(
    pairs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "env-cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    assert default_root() == root
    PairedPatchDataset(pairs, patch_size=32)  # fits the default memory cache: no files
    assert not root.exists()
    PairedPatchDataset(pairs, patch_size=32, cache_bytes=0)
    assert len(_caches(root)) == 1
    monkeypatch.setenv(CACHE_ENV, "off")
    assert default_root() is None
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("ESRGAN_CACHE_DIR", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert default_root() == tmp_path / "xdg" / "esrgan" / "decoded"
    # In a pod, tens of GB in ephemeral storage can evict it: only an explicit folder turns the cache on.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert default_root() is None
    monkeypatch.setenv(CACHE_ENV, str(root))
    assert default_root() == root


def _build_in_child(pairs: list[tuple[Path, Path]], root: Path) -> None:
    assert build(pairs, root, _load_rgb, 1, workers=1) is not None


def test_concurrent_builders_make_one_cache(pairs: Path, tmp_path: Path) -> None:
    # Two ranks on one machine start at once: the lock makes one decode and the other open it.
    root = tmp_path / "cache"
    files = [(p, pairs / "lr" / p.name) for p in sorted((pairs / "hr").iterdir())]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_build_in_child, args=(files, root)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(_caches(root)) == 1 and not [p for p in root.iterdir() if ".building-" in p.name]
