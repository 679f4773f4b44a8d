"""Side-by-side comparison images: LR, bicubic, one or more SR results and HR, each captioned.

Used for the sample crops logged per alpha and for the register step's one-image-per-photo view of
the whole interpolation sweep, where the perception-distortion trade-off is seen rather than read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw
from torch import nn

from esrgan.data.convert import mod_crop, to_rgb8
from esrgan.data.imresize import imresize
from esrgan.inference import upscale

CAPTION_HEIGHT = 14
GAP = 4
#: LR pixels of context upscaled around a crop (as ``upscale``'s tile padding: equal to the
#: whole-image result within a grey level, at a fraction of the cost on large photos).
CONTEXT = 16


def detail_crop_box(hr: np.ndarray, crop: int, scale: int) -> tuple[int, int, int]:
    """``(y, x, size)`` of the ``crop`` x ``crop`` window with the most fine detail.

    Detail is the mean absolute Laplacian of the grey image, summed over a grid of candidate
    windows; the centre crop of a photo is often sky or an out-of-focus background, where SR
    results look alike. Coordinates and size are multiples of ``scale`` so LR crops align.
    """
    h, w = hr.shape[:2]
    size = max(scale, min(crop, h, w) // scale * scale)
    grey = hr[..., :3].astype(np.float64).mean(axis=2)
    lap = np.zeros_like(grey)
    lap[1:-1, 1:-1] = np.abs(4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:])
    step = max(scale, size // 4 // scale * scale)
    best, box = -1.0, ((h - size) // 2 // scale * scale, (w - size) // 2 // scale * scale)
    for y in range(0, h - size + 1, step):
        for x in range(0, w - size + 1, step):
            score = float(lap[y : y + size, x : x + size].mean())
            if score > best:
                best, box = score, (y, x)
    return box[0], box[1], size


def captioned(image: np.ndarray, caption: str) -> np.ndarray:
    """``image`` (HxWx3 uint8) with a white caption bar above it (PIL's built-in bitmap font)."""
    bar = Image.new("RGB", (image.shape[1], CAPTION_HEIGHT), "white")
    ImageDraw.Draw(bar).text((2, 1), caption, fill="black")
    return np.concatenate([np.asarray(bar), image], axis=0)


def side_by_side(panels: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """Captioned panels of equal height in one row, separated by white gaps."""
    height = panels[0][1].shape[0]
    gap = np.full((height + CAPTION_HEIGHT, GAP, 3), 255, np.uint8)
    row: list[np.ndarray] = []
    for caption, image in panels:
        if image.shape[0] != height:
            raise ValueError(f"panel {caption!r} is {image.shape[0]} px high, expected {height}")
        row += [captioned(image[..., :3], caption), gap]
    return np.concatenate(row[:-1], axis=1)


def comparison(
    hr: np.ndarray, generators: Mapping[str, nn.Module], scale: int, crop: int = 128, tile: int = 0
) -> np.ndarray:
    """LR (nearest) | bicubic | one SR crop per generator | HR, on the most detailed crop of ``hr``.

    ``hr`` is any decoded image (made 8-bit RGB as in training); it is mod-cropped and downscaled with MATLAB bicubic as in
    evaluation, so the panels show exactly what the metrics measured.
    """
    hr = mod_crop(to_rgb8(hr)[0], scale)
    lr = imresize(hr, 1 / scale)
    y, x, c = detail_crop_box(hr, crop, scale)
    window = (slice(y, y + c), slice(x, x + c))
    lr_crop = lr[y // scale : (y + c) // scale, x // scale : (x + c) // scale]
    panels = [
        ("LR", np.repeat(np.repeat(lr_crop, scale, axis=0), scale, axis=1)),
        ("bicubic", imresize(lr, scale)[window]),
    ]
    ly0, lx0 = max(0, y // scale - CONTEXT), max(0, x // scale - CONTEXT)
    ly1, lx1 = min(lr.shape[0], (y + c) // scale + CONTEXT), min(lr.shape[1], (x + c) // scale + CONTEXT)
    context = np.ascontiguousarray(lr[ly0:ly1, lx0:lx1])
    sr_window = (slice(y - ly0 * scale, y - ly0 * scale + c), slice(x - lx0 * scale, x - lx0 * scale + c))
    panels += [(name, upscale(model, context, tile=tile)[sr_window]) for name, model in generators.items()]
    panels.append(("HR", hr[window]))
    return side_by_side(panels)


def sweep_comparisons(
    hr_images: Mapping[str, np.ndarray], generators: Mapping[float, nn.Module], scale: int, crop: int = 128
) -> dict[str, np.ndarray]:
    """One :func:`comparison` per photo with every interpolated generator, in increasing alpha.

    Args:
        hr_images: ``{photo name: RGB uint8 HR image}``.
        generators: ``{alpha: generator}`` (e.g. the whole interpolation sweep).
        scale: the generators' scale.
        crop: HR edge of the compared window.

    Returns:
        ``{photo name: LR | bicubic | alpha 0 | ... | alpha 1 | HR}`` images.
    """
    ordered = {f"alpha {alpha:g}": generators[alpha] for alpha in sorted(generators)}
    return {name: comparison(hr, ordered, scale, crop) for name, hr in hr_images.items()}
