"""Upscale files and folders on disk: what ``esrgan upscale`` does."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from esrgan.imageio import ImageReadError, is_image_path, read_image, write_image
from esrgan.inference import DEFAULT_TILE_PAD, upscale
from esrgan.models import RRDBNet

log = logging.getLogger(__name__)


def collect_inputs(inputs: Iterable[Path]) -> list[Path]:
    """Expand folders (their image files, sorted, not recursive) and keep files as given."""
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.is_file() and is_image_path(p))
        else:
            files.append(item)
    return files


def resolve_device(name: str) -> str:
    """``auto`` means CUDA when available, else CPU."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return name


def load_model_for_inference(model_ref: str, device: str = "auto") -> RRDBNet:
    """Load a generator from a file (or a ``models:/`` registry URI) onto ``device``, ready for inference."""
    import torch

    from esrgan.models import load_generator

    if model_ref.startswith(("models:/", "runs:/")):
        from pipeline.registry import load_registered_generator

        model = load_registered_generator(model_ref)
    else:
        model = load_generator(model_ref)
    dev = torch.device(resolve_device(device))
    model = model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


def upscale_files(
    inputs: Iterable[Path],
    model_ref: str,
    output_dir: Path,
    tile: int = 0,
    tile_pad: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    suffix: str = "_x{scale}",
) -> int:
    """Upscale every input image into ``output_dir`` as PNG.

    Inputs are never overwritten: an output that would land on an input is an error for that
    file. Unreadable files are reported in one line each and skipped.

    Returns:
        0 when every file succeeded, 1 when any failed.
    """
    files = collect_inputs(inputs)
    if not files:
        raise FileNotFoundError("no input images found")
    model = load_model_for_inference(model_ref, device)
    input_set = {p.resolve() for p in files}
    failed = 0
    for path in tqdm(files, desc="upscale", unit="img", disable=None):
        out_path = output_dir / f"{path.stem}{suffix.format(scale=model.scale)}.png"
        if out_path.resolve() in input_set:
            print(f"esrgan: error: {path}: output {out_path} would overwrite an input; skipped", file=sys.stderr)
            failed += 1
            continue
        try:
            image = read_image(path)
            result = upscale(
                model,
                image,
                tile=tile,
                tile_pad=DEFAULT_TILE_PAD if tile_pad is None else tile_pad,
                precision=precision,
            )  # type: ignore[arg-type]
            write_image(out_path, result)
        except (ImageReadError, ValueError) as exc:
            print(f"esrgan: error: {exc}", file=sys.stderr)
            failed += 1
    log.info("upscaled %d of %d images into %s", len(files) - failed, len(files), output_dir)
    return 1 if failed else 0
