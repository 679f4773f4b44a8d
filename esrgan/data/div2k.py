"""Downloading DIV2K (Agustsson & Timofte, NTIRE 2017), the ESRGAN training set.

800 training and 100 validation 2K-resolution PNGs from the official site
https://data.vision.ee.ethz.ch/cvl/DIV2K/ (research use; see the site's terms). The archives
are about 3.5 GB and 0.45 GB. After download the folders ``DIV2K_train_HR`` and
``DIV2K_valid_HR`` are laid out as ``<out>/train`` and ``<out>/val`` (see
:mod:`esrgan.data.layout`), ready for ``extract_patches(<out>/train, ...)``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from esrgan.data.layout import TRAIN_DIR, VAL_DIR
from esrgan.errors import EsrganError
from esrgan.fileio import atomic_write

DIV2K_BASE_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
#: archive name -> (MD5 published with community loaders such as torchsr, our split, folder in the zip)
DIV2K_ARCHIVES: dict[str, tuple[str, str, str]] = {
    "DIV2K_train_HR.zip": ("bdc2d9338d4e574fe81bf7d158758658", TRAIN_DIR, "DIV2K_train_HR"),
    "DIV2K_valid_HR.zip": ("9fcdda83005c5e5997799b69f955ff88", VAL_DIR, "DIV2K_valid_HR"),
}


class DownloadError(EsrganError, RuntimeError):
    """A download failed (offline, HTTP error) or its checksum did not match; one line."""


def download_div2k(out_dir: str | os.PathLike[str], *, keep_archives: bool = True, timeout: float = 30.0) -> Path:
    """Download, verify (MD5) and unpack DIV2K HR into ``out_dir/train`` and ``out_dir/val``.

    Archives go to ``out_dir/archives`` first (a verified archive already there is reused) and
    are unpacked through temporary folders renamed into place, so an interrupted run never
    leaves a half-filled split. Returns ``out_dir``.

    Raises:
        DownloadError: no network, an HTTP error or a checksum mismatch.
    """
    out = Path(out_dir)
    archives = out / "archives"
    for name, (md5, split, folder) in DIV2K_ARCHIVES.items():
        if (out / split).is_dir() and any((out / split).iterdir()):
            continue
        archive = archives / name
        if not (archive.is_file() and _md5(archive) == md5):
            _fetch(DIV2K_BASE_URL + name, archive, timeout)
            digest = _md5(archive)
            if digest != md5:
                archive.unlink()
                raise DownloadError(f"{DIV2K_BASE_URL + name}: MD5 {digest}, expected {md5}; the archive was removed")
        staging = out / f".{split}.unpacking"
        shutil.rmtree(staging, ignore_errors=True)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
        os.replace(staging / folder, out / split)
        shutil.rmtree(staging, ignore_errors=True)
        if not keep_archives:
            archive.unlink()
    return out


def _fetch(url: str, dest: Path, timeout: float) -> None:
    def _download(tmp: str) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as fh:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                    for block in iter(lambda: resp.read(1 << 20), b""):
                        fh.write(block)
                        bar.update(len(block))
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DownloadError(f"{url}: download failed ({reason}); are you offline?") from None

    atomic_write(dest, _download)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
