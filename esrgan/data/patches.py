"""Cutting HR images into sub-images with MATLAB-bicubic LR partners (BasicSR's recipe).

Training: every HR image is mod-cropped to a multiple of ``scale`` and cut into
``crop_size`` squares every ``step`` pixels, plus a last row/column flush with the border when
more than ``thresh_size`` pixels would be left over (BasicSR ``extract_subimages.py``). Each
sub-image's LR partner is ``imresize(sub_image, 1/scale)``, so an LR/HR pair is exact by
construction. Sub-image ``k`` (row-major, from 1) of ``photo.png`` is ``photo_s{k:03d}.png``
in both ``hr/`` and ``lr/``.

Validation: whole images, mod-cropped, with their LR partners, named after the source.

Inputs are normalised to 8-bit RGB (see :mod:`esrgan.data.convert`); an image smaller than
``crop_size`` on a side becomes a single sub-image covering that side, if it is at least
``min_size``; unreadable, non-image and too-small files are skipped. Every conversion or skip
is logged as one line naming the file and counted in the summary, which is also written to
``summary.json``.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.pool
import os
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from esrgan.data.config import ExtractConfig
from esrgan.data.convert import mod_crop, to_rgb8
from esrgan.data.imresize import imresize
from esrgan.fileio import write_json
from esrgan.imageio import ImageReadError, is_image_path, read_image, write_image
from esrgan.owned_folders import NotOwnedError, claim

log = logging.getLogger(__name__)

HR_DIR = "hr"
LR_DIR = "lr"
SUMMARY_FILE = "summary.json"

_CONVERSION_TEXT = {
    "16bit": "16-bit, reduced to 8-bit",
    "alpha_dropped": "opaque alpha channel dropped",
    "alpha_composited": "transparent, composited over white",
    "grey": "greyscale, replicated to RGB",
    "smaller_than_crop": "smaller than the crop, sub-images shrunk to the image",
}


def crop_positions(length: int, crop: int, step: int, thresh_size: int = 0) -> list[int]:
    """Start offsets of sub-images along one side (BasicSR): every ``step``, plus one flush with the end.

    A side shorter than ``crop`` gives ``[0]`` (the caller shrinks the crop to the side).
    """
    if length <= crop:
        return [0]
    positions = list(range(0, length - crop + 1, step))
    if length - (positions[-1] + crop) > thresh_size:
        positions.append(length - crop)
    return positions


@dataclass
class _Result:
    """What one worker did with one file; merged into the summary by the parent."""

    file: str
    outputs: list[str] = field(default_factory=list)
    skipped: str | None = None
    converted: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def _process(task: tuple[Path, Path, ExtractConfig, bool]) -> _Result:
    path, out, cfg, whole = task
    result = _Result(file=path.name)
    try:
        raw = read_image(path)
        rgb, notes = to_rgb8(raw)
    except (ImageReadError, ValueError) as exc:
        message = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
        result.skipped = "unreadable"
        result.messages.append(f"{message}; skipped")
        return result
    hr = mod_crop(rgb, cfg.scale)
    h, w = hr.shape[:2]
    min_size = min(cfg.min_size, cfg.crop_size) if not whole else cfg.min_size
    if min(h, w) < min_size:
        result.skipped = "too_small"
        result.messages.append(
            f"{path}: {rgb.shape[1]}x{rgb.shape[0]} is smaller than min_size {min_size} after mod-crop; skipped"
        )
        return result
    if not whole and min(h, w) < cfg.crop_size:
        notes.append("smaller_than_crop")
    for note in notes:
        result.converted.append(note)
        result.messages.append(f"{path}: {_CONVERSION_TEXT[note]}")

    if whole:
        crops = [(f"{path.stem}.png", hr)]
    else:
        ch, cw = min(cfg.crop_size, h), min(cfg.crop_size, w)
        ys = crop_positions(h, ch, cfg.step, cfg.thresh_size)
        xs = crop_positions(w, cw, cfg.step, cfg.thresh_size)
        starts = [(y, x) for y in ys for x in xs][: cfg.patch_limit]
        crops = [(f"{path.stem}_s{k:03d}.png", hr[y : y + ch, x : x + cw]) for k, (y, x) in enumerate(starts, 1)]
    for name, patch in crops:
        write_image(out / HR_DIR / name, patch)
        write_image(out / LR_DIR / name, imresize(patch, 1 / cfg.scale))
        result.outputs.append(name)
    return result


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds; spawn re-imports torch (through esrgan/__init__) in
    # each worker, seconds on a small machine. Workers use only NumPy and Pillow, so fork is
    # safe on Linux; elsewhere (macOS, Windows) fork is unsafe or missing.
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def _worker_pool(processes: int) -> multiprocessing.pool.Pool:
    # A forked worker inherits the caller's Python signal handlers (a pipeline stage turns SIGTERM
    # into an exception to close its run). Pool shutdown SIGTERMs idle workers, which must then
    # just exit, not print that exception's traceback.
    return _pool_context().Pool(processes, initializer=signal.signal, initargs=(signal.SIGTERM, signal.SIG_DFL))


def _run(hr_dir: Path, out_dir: Path, cfg: ExtractConfig, whole: bool, overwrite: bool) -> dict[str, Any]:
    hr_dir, out_dir = Path(hr_dir), Path(out_dir)
    if not hr_dir.is_dir():
        raise FileNotFoundError(f"{hr_dir}: no such folder")
    if out_dir.resolve() == hr_dir.resolve() or out_dir.resolve() in hr_dir.resolve().parents:
        raise ValueError(f"{out_dir}: the output folder must not contain the input folder {hr_dir}")
    existing = [p for sub in (HR_DIR, LR_DIR) if (out_dir / sub).is_dir() for p in (out_dir / sub).glob("*.png")]
    if existing and not overwrite:
        raise FileExistsError(f"{out_dir}: already holds {len(existing)} extracted images; pass overwrite=True")
    # Only a folder esrgan made is cleared (an older one is known by its summary.json): a folder of
    # someone else's PNGs is refused before anything is deleted.
    try:
        claim(out_dir, "output folder for extracted patches", legacy_markers=("summary.json",))
    except NotOwnedError:
        if existing:
            raise
    for stale in existing:
        stale.unlink()

    files = sorted(p for p in hr_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    results: list[_Result] = []
    tasks = []
    stems: dict[str, str] = {}
    for path in files:
        if not is_image_path(path):
            results.append(_Result(path.name, skipped="not_image", messages=[f"{path}: not an image file; skipped"]))
        elif path.stem in stems:
            msg = f"{path}: same name as {stems[path.stem]}, outputs would collide; skipped"
            results.append(_Result(path.name, skipped="duplicate_name", messages=[msg]))
        else:
            stems[path.stem] = path.name
            tasks.append((path, out_dir, cfg, whole))
    for r in results:
        log.warning(r.messages[0])

    (out_dir / HR_DIR).mkdir(parents=True, exist_ok=True)
    (out_dir / LR_DIR).mkdir(parents=True, exist_ok=True)
    desc = "validation images" if whole else "sub-images"
    with tqdm(total=len(tasks), desc=f"extracting {desc}", unit="image") as bar:

        def collect(result: _Result) -> None:
            for message in result.messages:
                log.warning(message)
            results.append(result)
            bar.update()

        if cfg.workers == 1 or len(tasks) <= 1:
            for task in tasks:
                collect(_process(task))
        else:
            with _worker_pool(min(cfg.workers, len(tasks))) as pool:
                for result in pool.imap(_process, tasks):
                    collect(result)

    results.sort(key=lambda r: r.file)
    summary = {
        "kind": "validation" if whole else "train",
        "input": str(hr_dir),
        # Not `workers`: the patches are the same for any worker count, so the summary must be too.
        "config": cfg.model_dump(include={"scale", "min_size"} if whole else None, exclude={"workers"}),
        "images": sum(1 for r in results if r.skipped is None),
        "patches": sum(len(r.outputs) for r in results),
        "skipped": dict(sorted(Counter(r.skipped for r in results if r.skipped).items())),
        "converted": dict(sorted(Counter(c for r in results for c in r.converted).items())),
        "messages": [m for r in results for m in r.messages],
    }
    write_json(out_dir / SUMMARY_FILE, summary)
    return summary


def extract_patches(
    hr_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    scale: int = 4,
    crop_size: int = 480,
    step: int = 240,
    thresh_size: int = 0,
    workers: int = 2,
    *,
    min_size: int = 128,
    patch_limit: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Cut every image in ``hr_dir`` into HR sub-images (``out_dir/hr``) and LR partners (``out_dir/lr``).

    Returns the summary ``{"images", "patches", "skipped": {reason: n}, "converted": {reason: n},
    "messages", ...}``, also written to ``out_dir/summary.json``. Skip reasons: ``not_image``,
    ``unreadable``, ``too_small``, ``duplicate_name``; conversions as in
    :mod:`esrgan.data.convert` plus ``smaller_than_crop``.

    Raises:
        FileExistsError: ``out_dir`` already holds extracted images and ``overwrite`` is False
            (with ``overwrite`` only ``out_dir/hr/*.png`` and ``out_dir/lr/*.png`` are removed).
    """
    cfg = ExtractConfig(
        scale=scale,
        crop_size=crop_size,
        step=step,
        thresh_size=thresh_size,
        workers=workers,
        min_size=min_size,
        patch_limit=patch_limit,
    )
    return extract_with_config(hr_dir, out_dir, cfg, overwrite=overwrite)


def extract_with_config(
    hr_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], cfg: ExtractConfig, *, overwrite: bool = False
) -> dict[str, Any]:
    """:func:`extract_patches` with a validated :class:`ExtractConfig` (as the pipeline step passes it)."""
    return _run(Path(hr_dir), Path(out_dir), cfg, whole=False, overwrite=overwrite)


def extract_validation(
    hr_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    scale: int = 4,
    workers: int = 2,
    *,
    min_size: int = 16,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write whole mod-cropped HR images (``out_dir/hr/<stem>.png``) and their LR (``out_dir/lr``).

    Same input policies and summary as :func:`extract_patches`, without cropping.
    """
    # crop_size and step are unused for whole images.
    cfg = ExtractConfig(scale=scale, min_size=min_size, workers=workers)
    return _run(Path(hr_dir), Path(out_dir), cfg, whole=True, overwrite=overwrite)
