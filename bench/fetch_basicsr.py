"""Fetch BasicSR's source (PyPI ``basicsr-fixed``) for the benchmarks, without installing it.

``basicsr-fixed`` pins/needs opencv, scikit-image, lmdb, tb-nightly, yapf, ... and its top-level
``import basicsr`` imports every data pipeline, metric and model. The benchmarks only need a few
unmodified source files (``archs/rrdbnet_arch.py``, ``archs/discriminator_arch.py``,
``archs/vgg_arch.py``, ``losses/*.py``, ``models/esrgan_model.py``), so we download the sdist with
pip (``pip download --no-deps``, hash-checked by pip against PyPI) and unpack it under
``bench/.cache/``; ``bench/peers.py`` imports those files directly, stubbing only the unrelated
packages they import (``basicsr.utils``' logger, ``basicsr.ops.dcn``).

    python bench/fetch_basicsr.py            # -> bench/.cache/basicsr-fixed-1.4.2/
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "1.4.2"
CACHE = Path(__file__).resolve().parent / ".cache"


def fetch(version: str = VERSION, cache: Path = CACHE) -> Path:
    """Download and unpack ``basicsr-fixed==version``; returns the unpacked source directory."""
    target = cache / f"basicsr-fixed-{version}"
    if (target / "basicsr" / "archs" / "rrdbnet_arch.py").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"basicsr-fixed=={version}", "-d", tmp]
        subprocess.run(cmd, check=True)
        sdist = next(Path(tmp).glob("basicsr*fixed-*.tar.gz"))
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        with tarfile.open(sdist) as tar:
            tar.extractall(cache, filter="data")
        (target / "SHA256").write_text(f"{digest}  {sdist.name}\n")
    return target


if __name__ == "__main__":
    path = fetch()
    print(f"BasicSR source: {path} ({(path / 'SHA256').read_text().strip()})")
