"""Evaluate a generator (and always the bicubic baseline) on a folder of HR images.

For each HR image, with the conventions of the SR literature (BasicSR's test scripts, the
PIRM challenge's NIQE):

0. 8-bit RGB as in training (:func:`esrgan.data.convert.to_rgb8`);
1. mod-crop to a multiple of ``scale`` (bottom/right pixels dropped);
2. LR = MATLAB bicubic ``imresize(hr, 1/scale)``, rounded to uint8;
3. SR = the model's output (``esrgan.upscale``), and the bicubic baseline
   ``imresize(lr, scale)``, both uint8;
4. metrics against the mod-cropped HR: PSNR/SSIM on the BT.601 Y channel, PSNR on RGB and
   the mean BT.601 chroma error (colour cast), all with ``scale`` pixels cropped from every border; NIQE (no reference) on the SR image
   with the same crop (as PIRM's ``shave_width``); LPIPS / ST-LPIPS variants on whole images.

Report schema (``schema_version`` 1), all metric values JSON numbers or ``null``::

    {
      "schema_version": 1,
      "hr_dir": "...", "scale": 4, "tile": 0,
      "metrics": ["psnr_y", ...],               # what was requested, in order
      "conventions": {...},                     # how every number was computed (text)
      "model":   {"name": "...", "mean": {m: v}, "count": {m: n}, "unavailable": {m: reason}},
      "bicubic": {same keys as "model"},
      "per_image": [{"name": "baby.png", "hr_shape": [H, W], "cropped_shape": [H', W'],
                     "hr_sha256": "...",                # of the mod-cropped HR pixels
                     "model": {m: v}, "bicubic": {m: v},
                     "unavailable": {"model": {m: reason}, "bicubic": {m: reason}}}, ...],
      "skipped": [{"name": "notes.txt", "reason": "..."}]
    }

``mean`` is over the images where a metric has a value and ``count`` says how many; a metric
without a value (``null``) has a reason in ``unavailable`` (e.g. missing LPIPS weights, an
image smaller than NIQE's 96x96 block, or infinite PSNR because SR equals HR). With
``model=None`` the "model" section is the bicubic baseline itself (``name: "bicubic"``).

The bicubic baseline does not depend on the model: a sweep over several generators evaluates
it once (``model=None``) and passes that report as ``baseline``; its per-image values are then
reused, after checking that they were computed on the same pixels with the same settings.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from tqdm import tqdm

from esrgan.data.convert import mod_crop, to_rgb8
from esrgan.data.imresize import imresize
from esrgan.data.layout import pixels_sha256
from esrgan.fileio import write_json
from esrgan.imageio import ImageReadError, is_image_path, read_image
from esrgan.inference import upscale
from esrgan.metrics import PERCEPTUAL_METRICS, MetricUnavailable, chroma_error, niqe, psnr, ssim
from esrgan.metrics.registry import names

SCHEMA_VERSION = 1

#: Every metric name ``evaluate_folder`` understands, in report order (:mod:`esrgan.metrics.registry`).
METRICS: tuple[str, ...] = names()


def conventions(scale: int) -> dict[str, Any]:
    """The evaluation conventions, as recorded in every report."""
    return {
        "images": "RGB uint8 as in training: 16-bit divided by 257 and rounded, grey repeated to 3 channels, "
        "opaque alpha dropped, transparent alpha composited over white",
        "mod_crop": f"HR cropped at the bottom/right to a multiple of {scale}",
        "lr": f"MATLAB bicubic imresize(hr, 1/{scale}): Keys cubic a=-0.5, antialiasing, symmetric padding",
        "bicubic_baseline": f"MATLAB bicubic imresize(lr, {scale})",
        "rounding": "LR, SR and bicubic images are rounded and clipped to uint8 before any metric",
        "crop_border": scale,
        "psnr_y": "PSNR (peak 255, float64) on the Y channel of YCbCr, ITU-R BT.601 as MATLAB rgb2ycbcr: "
        "Y = 16 + 65.481 R + 128.553 G + 24.966 B with RGB in [0, 1], not rounded; crop_border px cropped",
        "ssim_y": "SSIM on the same Y channel: 11x11 Gaussian window sigma 1.5, 'valid' filtering, "
        "C1 = (0.01*255)^2, C2 = (0.03*255)^2, float64; crop_border px cropped",
        "psnr_rgb": "PSNR (peak 255, float64) over all three RGB channels; crop_border px cropped",
        "chroma_error": "mean |dCb| and |dCr| averaged, BT.601 as MATLAB rgb2ycbcr, 0-255 scale, float64; "
        "crop_border px cropped; lower is better (a colour cast raises it, luminance changes do not)",
        "niqe": "NIQE of the SR image (no reference), MATLAB niqe_release port: Y rounded to integers, "
        "crop_border px cropped, 96x96 blocks, official pristine parameters; lower is better",
        "lpips": "LPIPS v0.1 (torchvision ImageNet trunk + lpips linear layers), inputs in [-1, 1], "
        "whole image; lower is better",
        "stlpips": "ST-LPIPS shift-tolerant variant (weights shipped in stlpips-pytorch), inputs in [-1, 1], "
        "whole image; lower is better",
        "null": "a metric is null when it cannot be computed; the reason is under 'unavailable'",
    }


def _image_metrics(
    sr: np.ndarray, hr: np.ndarray, names: Sequence[str], crop_border: int, device: str
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Values (``None`` when unavailable) and reasons for the unavailable ones."""
    values: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    compute: dict[str, Callable[[], float]] = {
        "psnr_y": lambda: psnr(sr, hr, crop_border, y_channel=True),
        "ssim_y": lambda: ssim(sr, hr, crop_border, y_channel=True),
        "psnr_rgb": lambda: psnr(sr, hr, crop_border, y_channel=False),
        "chroma_error": lambda: chroma_error(sr, hr, crop_border),
        "niqe": lambda: niqe(sr, crop_border),
    }
    for name in names:

        def perceptual(name: str = name) -> float:
            return PERCEPTUAL_METRICS[name](sr, hr, device)

        fn = compute.get(name) or perceptual
        try:
            value = fn()
        except (MetricUnavailable, ValueError) as exc:
            values[name], reasons[name] = None, str(exc)
            continue
        if not math.isfinite(value):
            why = " (SR identical to HR)" if name.startswith("psnr") else ""
            values[name], reasons[name] = None, f"{name} is {value}{why}"
        else:
            values[name] = value
    return values, reasons


def _summary(name: str, per_image: list[dict[str, Any]], key: str, names: Sequence[str]) -> dict[str, Any]:
    mean: dict[str, float | None] = {}
    count: dict[str, int] = {}
    unavailable: dict[str, str] = {}
    for m in names:
        vals = [img[key][m] for img in per_image if img[key][m] is not None]
        count[m] = len(vals)
        mean[m] = float(np.mean(vals)) if vals else None
        reasons = [img["unavailable"][key][m] for img in per_image if m in img["unavailable"][key]]
        if len(reasons) == len(per_image):
            unavailable[m] = reasons[0]
        elif reasons:
            unavailable[m] = f"missing for {len(reasons)} of {len(per_image)} images, e.g. {reasons[0]}"
    return {"name": name, "mean": mean, "count": count, "unavailable": unavailable}


class BaselineMismatch(ValueError):
    """A bicubic baseline report was not computed on these images with these settings."""


def _baseline_images(baseline: Mapping[str, Any], scale: int, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The baseline's per-image entries by name, after checking its settings cover this evaluation."""
    if baseline.get("schema_version") != SCHEMA_VERSION or baseline.get("model", {}).get("name") != "bicubic":
        raise BaselineMismatch("the baseline is not a bicubic-only evaluation report (schema_version 1, model=None)")
    if baseline.get("scale") != scale or baseline.get("conventions") != conventions(scale):
        raise BaselineMismatch(f"the baseline was computed with other settings (scale {baseline.get('scale')})")
    missing = [m for m in names if m not in baseline.get("metrics", [])]
    if missing:
        raise BaselineMismatch(f"the baseline lacks the metrics {missing}")
    return {img["name"]: img for img in baseline["per_image"]}


def evaluate_folder(
    model: nn.Module | None,
    hr_dir: str | os.PathLike[str],
    scale: int = 4,
    tile: int = 0,
    metrics: Sequence[str] = METRICS,
    progress: bool = True,
    device: str = "cpu",
    model_name: str = "model",
    baseline: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` and the bicubic baseline on every image of a flat folder of HR images.

    Args:
        model: an RGB generator with ``scale`` equal to ``scale`` (run through
            ``esrgan.upscale``, not modified), or ``None`` to evaluate bicubic alone.
        hr_dir: a folder of HR images (Set5/Set14/BSD100 layout). Files that are not
            readable 8-bit images are skipped with a one-line warning and listed in the report.
        scale: the SR factor; also the border cropped for PSNR/SSIM/NIQE.
        tile: tile size passed to ``esrgan.upscale`` (0 = whole image).
        metrics: names from :data:`METRICS`.
        progress: show a tqdm progress bar.
        device: device for the perceptual networks.
        model_name: the name recorded for the model in the report.
        baseline: a report of ``evaluate_folder(None, ...)`` on the same folder, whose bicubic
            values are reused instead of recomputed (the report is the same either way).

    Returns:
        The report described in this module's docstring.

    Raises:
        BaselineMismatch: ``baseline`` was computed with other settings or metrics, or an image
            differs from the one it measured (or is missing from it).
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if model is not None and int(getattr(model, "scale", scale)) != scale:
        raise ValueError(f"the model upscales x{model.scale} but scale={scale} was requested")
    hr_dir = Path(hr_dir)
    if not hr_dir.is_dir():
        raise NotADirectoryError(f"{hr_dir}: not a folder")
    names = list(metrics)
    reuse = _baseline_images(baseline, scale, names) if baseline is not None else None

    per_image: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []

    def skip(path: Path, reason: str) -> None:
        tqdm.write(f"skipping {path.name}: {reason}", file=sys.stderr)  # above the bar, not through it
        skipped.append({"name": path.name, "reason": reason})

    paths = sorted(hr_dir.iterdir())
    for path in tqdm(paths, desc=f"evaluate {hr_dir.name}", unit="img", disable=not progress):
        if not path.is_file() or not is_image_path(path):
            skip(path, "not an image file")
            continue
        try:
            hr_full, _ = to_rgb8(read_image(path))
        except (ImageReadError, ValueError) as exc:
            skip(path, str(exc))
            continue
        hr = mod_crop(hr_full, scale)
        if min(hr.shape[:2]) < scale:
            skip(path, f"smaller than the scale ({hr_full.shape[0]}x{hr_full.shape[1]} < {scale})")
            continue
        digest = pixels_sha256(hr)
        lr = imresize(hr, 1 / scale)
        if reuse is not None:
            known = reuse.get(path.name)
            if known is None or known.get("hr_sha256") != digest:
                why = "not measured by" if known is None else "other pixels than measured by"
                raise BaselineMismatch(f"{path}: {why} the bicubic baseline (stale: evaluate bicubic again)")
            bic_values = {m: known["bicubic"][m] for m in names}
            bic_reasons = {m: r for m, r in known["unavailable"]["bicubic"].items() if m in names}
        else:
            bicubic = imresize(lr, scale)
            bic_values, bic_reasons = _image_metrics(bicubic, hr, names, scale, device)
        if model is None:
            sr_values, sr_reasons = bic_values, bic_reasons
        else:
            sr_values, sr_reasons = _image_metrics(upscale(model, lr, tile=tile), hr, names, scale, device)
        per_image.append(
            {
                "name": path.name,
                "hr_shape": list(hr_full.shape[:2]),
                "cropped_shape": list(hr.shape[:2]),
                "hr_sha256": digest,
                "model": sr_values,
                "bicubic": bic_values,
                "unavailable": {"model": sr_reasons, "bicubic": bic_reasons},
            }
        )

    return {
        "schema_version": SCHEMA_VERSION,
        "hr_dir": str(hr_dir),
        "scale": scale,
        "tile": tile,
        "metrics": names,
        "conventions": conventions(scale),
        "model": _summary("bicubic" if model is None else model_name, per_image, "model", names),
        "bicubic": _summary("bicubic", per_image, "bicubic", names),
        "per_image": per_image,
        "skipped": skipped,
    }


def write_report(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``report`` as indented JSON, atomically (NaN/infinity are rejected, never written)."""
    return write_json(path, report)
