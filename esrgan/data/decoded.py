"""A decoded, memory-mapped copy of a folder of LR/HR pairs: the training loader's fast path at scale.

A training item is a 128 or 192 pixel crop of a 480x480 sub-image. Read from PNG, every item
decodes the whole sub-image (~8 ms of one core); read from this cache it copies only the crop's
rows out of the page cache (0.2-0.8 ms; BENCHMARKS.md). Sets small enough for memory
(``cache_bytes`` of the datasets) never come here; larger ones are decoded once into two flat
files of uint8 RGB pixels::

    <root>/<fingerprint>/hr.u8, lr.u8   every image's HxWx3 pixels, one after another
    <root>/<fingerprint>/index.json     shapes and byte offsets, the source folder, the fingerprint

and opened with ``np.memmap`` in each process (lazily, so DataLoader workers and DDP ranks on one
machine share the same page-cache pages instead of each holding a decoded copy). The fingerprint
hashes every file's name, size and modification time, so a changed folder gets a new cache; a
finished cache replaces older caches of the same source folder. Building takes a lock on
``<root>/<fingerprint>.lock``, so concurrent ranks decode once and the others wait for it; files
appear under their final name only when complete.

The root is ``$ESRGAN_DECODED_CACHE`` (``off`` disables the cache), else
``$ESRGAN_CACHE_DIR/decoded``, else ``~/.cache/esrgan/decoded`` (``$XDG_CACHE_HOME``); in a
Kubernetes pod only ``$ESRGAN_DECODED_CACHE`` turns it on, since tens of GB in a container's
ephemeral storage can get the pod evicted. A build must leave 10% of the disk (and 1 GiB) free.
Where the cache is off, cannot be written or has no room, the dataset logs one line and decodes
per item as before: the pixels, and so every batch, are the same either way.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CACHE_ENV = "ESRGAN_DECODED_CACHE"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
#: Everything a cache folder holds; a leftover with other files is not replaced.
CACHE_FILES = frozenset({INDEX_FILE, "hr.u8", "lr.u8"})
#: Room a build leaves free on the cache's disk: this much, and at least FREE_FRACTION of the disk.
FREE_MARGIN_BYTES = 1 << 30
FREE_FRACTION = 0.1

Shape = tuple[int, int, int]
Loader = Callable[[Path], np.ndarray]


def default_root() -> Path | None:
    """The cache folder from the environment (see the module docstring); ``None`` when disabled."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env.lower() in ("off", "0", "false", "no", "none"):
        return None
    if env:
        return Path(env)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):  # a pod: only where the user points it
        return None
    base = os.environ.get("ESRGAN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "esrgan"
    )
    return Path(base) / "decoded"


def fingerprint(pairs: list[tuple[Path, Path]]) -> str:
    """Hex digest of every file's name, size and modification time (a stat each, nothing read)."""
    digest = hashlib.sha256(f"esrgan-decoded-v{FORMAT_VERSION}".encode())
    for hr, lr in pairs:
        for path in (hr, lr):
            st = path.stat()
            digest.update(f"\0{path.parent.name}/{path.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


class DecodedPairs:
    """Read-only view of a built cache: :meth:`pair` returns an image's HR and LR pixels as arrays.

    The arrays are views into ``np.memmap``s opened on first use in each process; the maps are
    not pickled (a ``spawn`` worker opens its own).
    """

    def __init__(self, folder: Path, hr_shapes: list[Shape], lr_shapes: list[Shape]) -> None:
        self.folder = folder
        self.hr_shapes, self.lr_shapes = hr_shapes, lr_shapes
        self._hr_offsets, self._lr_offsets = _offsets(hr_shapes), _offsets(lr_shapes)
        self._maps: tuple[np.memmap[Any, np.dtype[np.uint8]], np.memmap[Any, np.dtype[np.uint8]]] | None = None

    def _open(self) -> tuple[np.memmap[Any, np.dtype[np.uint8]], np.memmap[Any, np.dtype[np.uint8]]]:
        if self._maps is None:
            hr = np.memmap(self.folder / "hr.u8", dtype=np.uint8, mode="r")
            lr = np.memmap(self.folder / "lr.u8", dtype=np.uint8, mode="r")
            self._maps = (hr, lr)
        return self._maps

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(hr, lr)`` HxWx3 uint8 views of image ``index`` (no pixels are read until used)."""
        hr_map, lr_map = self._open()
        return (
            _view(hr_map, self._hr_offsets[index], self.hr_shapes[index]),
            _view(lr_map, self._lr_offsets[index], self.lr_shapes[index]),
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = None  # a memmap pickles as a full in-memory copy of the file
        return state


def _offsets(shapes: list[Shape]) -> list[int]:
    sizes = [h * w * c for h, w, c in shapes]
    return [0, *np.cumsum(sizes, dtype=np.int64).tolist()[:-1]] if sizes else []


def _view(mm: np.ndarray, offset: int, shape: Shape) -> np.ndarray:
    h, w, c = shape
    return mm[offset : offset + h * w * c].reshape(h, w, c)


def _read_index(folder: Path, key: str, count: int) -> DecodedPairs | None:
    """The cache in ``folder`` if it is complete and matches; ``None`` otherwise."""
    try:
        index = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
        if index.get("version") != FORMAT_VERSION or index.get("fingerprint") != key or len(index["hr"]) != count:
            return None
        hr_shapes = [(int(h), int(w), int(c)) for h, w, c in index["hr"]]
        lr_shapes = [(int(h), int(w), int(c)) for h, w, c in index["lr"]]
        for name, shapes in (("hr.u8", hr_shapes), ("lr.u8", lr_shapes)):
            if (folder / name).stat().st_size != sum(h * w * c for h, w, c in shapes):
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return DecodedPairs(folder, hr_shapes, lr_shapes)


def lookup(pairs: list[tuple[Path, Path]], root: Path) -> DecodedPairs | None:
    """The finished cache of ``pairs`` under ``root``, or ``None`` (nothing is built)."""
    key = fingerprint(pairs)
    return _read_index(root / key, key, len(pairs))


def _decode_pair(task: tuple[Loader, Path, Path]) -> tuple[np.ndarray, np.ndarray]:
    load, hr, lr = task
    return load(hr), load(lr)


def _decoded(pairs: list[tuple[Path, Path]], load: Loader, workers: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    tasks = [(load, hr, lr) for hr, lr in pairs]
    if workers <= 1 or len(tasks) < 2:
        yield from map(_decode_pair, tasks)
        return
    from esrgan.data.patches import _worker_pool

    with _worker_pool(min(workers, len(tasks))) as pool:
        # In order, a few images ahead of the writer: memory stays at workers x chunks.
        yield from pool.imap(_decode_pair, tasks, chunksize=4)


def build(
    pairs: list[tuple[Path, Path]],
    root: Path,
    load: Loader,
    decoded_bytes: int,
    workers: int | None = None,
) -> DecodedPairs | None:
    """Open the cache of ``pairs`` under ``root``, decoding it first if it does not exist yet.

    ``load`` reads one file as HxWx3 uint8 (what the dataset would do per item);
    ``decoded_bytes`` is the size the cache will have (checked against the free disk space).
    Returns ``None``, after logging one line, when the cache cannot be made (no room, no write
    permission); a corrupt source image raises as it would without the cache.
    """
    key = fingerprint(pairs)
    folder = root / key
    found = _read_index(folder, key, len(pairs))
    if found is not None:
        return found
    source = str(pairs[0][0].parent.resolve()) if pairs else ""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another rank may be building this very cache
            found = _read_index(folder, key, len(pairs))
            if found is not None:
                return found
            disk = shutil.disk_usage(root)
            free = disk.free
            if free < decoded_bytes + max(FREE_MARGIN_BYTES, int(FREE_FRACTION * disk.total)):
                log.warning(
                    "%s: %.1f GB free, the decoded cache needs %.1f GB and 10%% of the disk spare; decoding per "
                    "item (slower); set %s to a folder with room",
                    root,
                    free / 1e9,
                    decoded_bytes / 1e9,
                    CACHE_ENV,
                )
                return None
            n = workers if workers is not None else min(8, len(os.sched_getaffinity(0)))
            log.info("decoding %d image pairs (%.1f GB) into %s", len(pairs), decoded_bytes / 1e9, folder)
            _write(pairs, root, folder, key, source, load, n)
    except OSError as exc:
        log.warning("%s: cannot write the decoded cache (%s); decoding per item (slower)", root, exc.strerror or exc)
        return None
    _drop_older(root, key, source)
    return _read_index(folder, key, len(pairs))


def _write(
    pairs: list[tuple[Path, Path]], root: Path, folder: Path, key: str, source: str, load: Loader, workers: int
) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.building-", dir=root))
    try:
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the cache from other users
        hr_shapes: list[list[int]] = []
        lr_shapes: list[list[int]] = []
        with open(staging / "hr.u8", "wb") as hr_file, open(staging / "lr.u8", "wb") as lr_file:
            for hr, lr in _decoded(pairs, load, workers):
                hr_file.write(np.ascontiguousarray(hr, dtype=np.uint8).tobytes())
                lr_file.write(np.ascontiguousarray(lr, dtype=np.uint8).tobytes())
                hr_shapes.append(list(hr.shape))
                lr_shapes.append(list(lr.shape))
        index = {"version": FORMAT_VERSION, "fingerprint": key, "source": source, "hr": hr_shapes, "lr": lr_shapes}
        (staging / INDEX_FILE).write_text(json.dumps(index), encoding="utf-8")
        if folder.exists():  # an incomplete or mismatched leftover under the final name
            strangers = sorted(p.name for p in folder.iterdir() if p.name not in CACHE_FILES)
            if strangers:  # never ours (or not only ours): leave it, decode per item instead
                raise OSError(
                    errno.EEXIST, f"{folder} holds files the cache did not write ({strangers[0]}); left as is"
                )
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _drop_older(root: Path, key: str, source: str) -> None:
    """Remove finished caches of the same source folder but other contents (they can never match again)."""
    for other in root.iterdir():
        if other.name == key or not (other / INDEX_FILE).is_file():
            continue
        try:
            if json.loads((other / INDEX_FILE).read_text(encoding="utf-8")).get("source") == source:
                shutil.rmtree(other, ignore_errors=True)
                (root / f"{other.name}.lock").unlink(missing_ok=True)
        except (OSError, ValueError):
            continue
