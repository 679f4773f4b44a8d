"""The on-disk layout of an HR dataset folder, shared by the sample set, imports and DIV2K.

::

    <dataset>/train/*.png     training HR images (DIV2K_train_HR plays this role)
    <dataset>/val/*.png       validation HR images (DIV2K_valid_HR)
    <dataset>/splits.json     {"train": [...names], "val": [...names]}
    <dataset>/manifest.json   where every image came from, its licence and checksums

Two sibling folders rather than one flat folder plus a split file, because every consumer wants
one split at a time: ``extract_patches(<dataset>/train, ...)`` and
``extract_validation(<dataset>/val, ...)`` take plain folders, so DIV2K's own
``DIV2K_train_HR`` / ``DIV2K_valid_HR`` folders (or any folder of images) can be used directly
without an import, and DVC can track each split as a directory. ``splits.json`` repeats the
split so that it is recorded (and diffable) without listing folders.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from esrgan.imageio import is_image_path

TRAIN_DIR = "train"
VAL_DIR = "val"
SPLITS_FILE = "splits.json"
MANIFEST_FILE = "manifest.json"


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix), sorted by name; hidden files are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_path(p))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pixels_sha256(pixels: np.ndarray) -> str:
    """Hex SHA-256 of an array's shape and bytes: the same for equal pixels in any file format or
    zlib build (a PNG's bytes are not)."""
    return hashlib.sha256(f"{pixels.shape}".encode() + np.ascontiguousarray(pixels).tobytes()).hexdigest()
