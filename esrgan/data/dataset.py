"""PyTorch datasets of aligned LR/HR pairs, as written by :mod:`esrgan.data.patches`.

Randomness is a pure function of ``(seed, epoch, index)``: every item draws from
``np.random.default_rng([seed, epoch, index])``, so a batch does not depend on the number of
DataLoader workers, on which process serves an item, or on what was drawn before it. Call
:meth:`PairedPatchDataset.set_epoch` before each epoch (with ``persistent_workers=False``, the
default, workers pick the new epoch up) to get fresh crops.

Decoded images are kept in memory when they fit ``cache_bytes`` (loaded once, before
DataLoader workers fork, so workers share them). Larger sets (DIV2K's ~32k sub-images decode to
~23.5 GB) are decoded once into a memory-mapped file cache (:mod:`esrgan.data.decoded`) that workers
and ranks share through the page cache, or, with ``disk_cache=None`` or where the cache cannot be
written, decoded per item. Items are the same pixels in every case.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from esrgan.data import decoded
from esrgan.data.convert import to_rgb8
from esrgan.data.layout import list_images
from esrgan.data.patches import HR_DIR, LR_DIR
from esrgan.imageio import read_image

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 2 << 30  # 2 GiB of decoded pixels
#: ``disk_cache`` default: the folder :func:`esrgan.data.decoded.default_root` names (environment).
AUTO = "auto"

DiskCache = str | os.PathLike[str] | None


def _resolve_dirs(hr_dir: str | os.PathLike[str], lr_dir: str | os.PathLike[str] | None) -> tuple[Path, Path]:
    hr, lr = Path(hr_dir), None if lr_dir is None else Path(lr_dir)
    if lr is None:  # an extraction root holding hr/ and lr/
        hr, lr = hr / HR_DIR, hr / LR_DIR
    for folder in (hr, lr):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
    return hr, lr


def _pair_files(hr: Path, lr: Path) -> list[tuple[Path, Path]]:
    hr_files = {p.name: p for p in list_images(hr)}
    lr_files = {p.name: p for p in list_images(lr)}
    if not hr_files:
        raise ValueError(f"{hr}: no images")
    only_hr, only_lr = sorted(hr_files.keys() - lr_files), sorted(lr_files.keys() - hr_files)
    if only_hr or only_lr:
        name, where = (only_hr[0], lr) if only_hr else (only_lr[0], hr)
        raise ValueError(f"{where}: {len(only_hr) + len(only_lr)} unpaired file(s), e.g. no {name}")
    return [(hr_files[n], lr_files[n]) for n in sorted(hr_files)]


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding."""
    with Image.open(path) as img:
        return img.size[1], img.size[0]


def _load_rgb(path: Path) -> np.ndarray:
    return to_rgb8(read_image(path))[0]


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)


class PairItem(TypedDict):
    """One dataset item: the LR and HR images as ``C x H x W`` float tensors in [0, 1], and the file stem."""

    lr: torch.Tensor
    hr: torch.Tensor
    name: str


class _PairedFolder(Dataset[PairItem]):
    """Shared pairing, size checks and caching of the two datasets."""

    def __init__(
        self, hr_dir: str | os.PathLike[str], lr_dir: str | os.PathLike[str] | None, disk_cache: DiskCache
    ) -> None:
        self.hr_dir, self.lr_dir = _resolve_dirs(hr_dir, lr_dir)
        self.pairs = _pair_files(self.hr_dir, self.lr_dir)
        self._cache: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._decoded: decoded.DecodedPairs | None = None
        root = decoded.default_root() if disk_cache == AUTO else None if disk_cache is None else Path(disk_cache)
        self._disk_root = root
        found = decoded.lookup(self.pairs, root) if root is not None else None
        if found is not None:  # a finished cache knows every size: no header reads
            self._decoded = found
            self.sizes = [
                ((h, w), (lh, lw)) for (h, w, _), (lh, lw, _) in zip(found.hr_shapes, found.lr_shapes, strict=True)
            ]
        else:
            self.sizes = [(_image_size(h), _image_size(lr)) for h, lr in self.pairs]

    def _load(self, cache_bytes: int) -> None:
        """Keep the decoded pixels in memory, or in the disk cache, as their size allows (after the checks)."""
        size = sum(3 * (hh * hw + lh * lw) for (hh, hw), (lh, lw) in self.sizes)
        if size <= cache_bytes:
            if self._decoded is not None:  # copied off the map: the memory cache must not page from disk
                self._cache = [
                    (np.array(hr), np.array(lr)) for hr, lr in map(self._decoded.pair, range(len(self.pairs)))
                ]
            else:
                self._cache = [(_load_rgb(hr), _load_rgb(lr)) for hr, lr in self.pairs]
            self._decoded = None
        elif self._decoded is None and self._disk_root is not None:
            self._decoded = decoded.build(self.pairs, self._disk_root, _load_rgb, size)
        elif self._decoded is None:
            log.info(
                "%s: %.1f GB decoded, more than cache_bytes; decoding per item (set %s to a folder with room "
                "for a memory-mapped decoded copy, ~30x less CPU per item)",
                self.hr_dir,
                size / 1e9,
                decoded.CACHE_ENV,
            )

    def _check_scale(self, scale: int | None) -> int:
        """The common integer scale of all pairs (checked against ``scale`` when given)."""
        found: int | None = None
        for (hr_path, _), ((hh, hw), (lh, lw)) in zip(self.pairs, self.sizes, strict=True):
            s = hh // lh if lh else 0
            if s < 1 or (hh, hw) != (lh * s, lw * s) or (scale is not None and s != scale):
                want = f"x{scale}" if scale is not None else "an integer multiple"
                raise ValueError(f"{hr_path}: HR {hw}x{hh} is not {want} of LR {lw}x{lh}")
            if found is not None and s != found:
                raise ValueError(f"{hr_path}: scale x{s} differs from x{found} of the other pairs")
            found = s
        assert found is not None  # _pair_files raised on an empty folder
        return found

    def _pair(self, file_index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None:
            return self._cache[file_index]
        if self._decoded is not None:
            return self._decoded.pair(file_index)
        hr, lr = self.pairs[file_index]
        return _load_rgb(hr), _load_rgb(lr)


class PairedPatchDataset(_PairedFolder):
    """Random aligned crops of LR/HR pairs with flips and 90-degree rotations, for training.

    Args:
        hr_dir: folder of HR images, or an extraction root holding ``hr/`` and ``lr/`` when
            ``lr_dir`` is None.
        lr_dir: folder of LR images with the same file names.
        patch_size: HR crop side (a multiple of ``scale``); the LR crop is ``patch_size // scale``.
        scale: HR size / LR size, checked for every pair.
        augment: random horizontal flip, vertical flip and transpose (each p = 0.5), applied
            identically to LR and HR; together they give all 8 rotations/reflections.
        seed: with the epoch and the index, determines every crop and augmentation.
        length: items per epoch (default: one per file); item ``i`` crops file ``i % files``.
        cache_bytes: keep decoded images in memory when they need at most this much.
        disk_cache: folder of the memory-mapped decoded cache used when the images exceed
            ``cache_bytes`` (:mod:`esrgan.data.decoded`); ``"auto"``: ``$ESRGAN_DECODED_CACHE``,
            else ``~/.cache/esrgan/decoded``; ``None``: decode per item.

    Items: ``{"lr": 3 x p/s x p/s, "hr": 3 x p x p`` float tensors in [0, 1], ``"name"``: file stem``}``.
    """

    def __init__(
        self,
        hr_dir: str | os.PathLike[str],
        lr_dir: str | os.PathLike[str] | None = None,
        patch_size: int = 128,
        scale: int = 4,
        augment: bool = True,
        seed: int = 0,
        length: int | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        disk_cache: DiskCache = AUTO,
    ) -> None:
        if patch_size <= 0 or patch_size % scale:
            raise ValueError(f"patch_size {patch_size} must be a positive multiple of scale {scale}")
        if length is not None and length <= 0:
            raise ValueError(f"length must be positive, got {length}")
        super().__init__(hr_dir, lr_dir, disk_cache)
        self.scale = self._check_scale(scale)
        for (hr_path, _), ((hh, hw), _) in zip(self.pairs, self.sizes, strict=True):
            if min(hh, hw) < patch_size:
                raise ValueError(f"{hr_path}: {hw}x{hh} is smaller than patch_size {patch_size}")
        self._load(cache_bytes)
        self.patch_size, self.augment, self.seed = patch_size, augment, seed
        self.length = len(self.pairs) if length is None else length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the crops and augmentations of ``epoch`` (items stay a function of seed, epoch, index)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> PairItem:
        if not 0 <= index < self.length:
            raise IndexError(index)
        file_index = index % len(self.pairs)
        hr, lr = self._pair(file_index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        lp = self.patch_size // self.scale
        y = int(rng.integers(0, lr.shape[0] - lp + 1))
        x = int(rng.integers(0, lr.shape[1] - lp + 1))
        flips = rng.random(3) < 0.5  # drawn even without augmentation, so crops do not depend on it
        lr = lr[y : y + lp, x : x + lp]
        hr = hr[y * self.scale : (y + lp) * self.scale, x * self.scale : (x + lp) * self.scale]
        if self.augment:
            lr, hr = (augment_pair(a, *flips) for a in (lr, hr))
        return {"lr": _to_tensor(lr), "hr": _to_tensor(hr), "name": self.pairs[file_index][0].stem}


def augment_pair(image: np.ndarray, hflip: bool, vflip: bool, transpose: bool) -> np.ndarray:
    """Apply BasicSR's augmentation (horizontal flip, vertical flip, then transpose) to an HxWxC array."""
    if hflip:
        image = image[:, ::-1]
    if vflip:
        image = image[::-1]
    if transpose:
        image = image.transpose(1, 0, 2)
    return image


class PairedImageDataset(_PairedFolder):
    """Whole LR/HR image pairs for validation; items as in :class:`PairedPatchDataset` (and its caches).

    ``scale`` is inferred from the pairs (all must share it) when not given.
    """

    def __init__(
        self,
        hr_dir: str | os.PathLike[str],
        lr_dir: str | os.PathLike[str] | None = None,
        scale: int | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        disk_cache: DiskCache = AUTO,
    ) -> None:
        super().__init__(hr_dir, lr_dir, disk_cache)
        self.scale = self._check_scale(scale)
        self._load(cache_bytes)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> PairItem:
        hr, lr = self._pair(index)
        return {"lr": _to_tensor(lr), "hr": _to_tensor(hr), "name": self.pairs[index][0].stem}
