"""Upscaling images with a generator: whole-image or tiled, any size, RGB/RGBA/grey, 8/16-bit or float,
with any engine (torch, ONNX Runtime, OpenVINO; :mod:`esrgan.engines`).

Tiling keeps memory bounded by the tile size: each tile is run with ``tile_pad`` pixels of
real neighbouring context on every side (clamped at the image border, where the network's own
zero padding applies exactly as on the whole image), and only the tile's own area of the
output is kept. With enough context the tiled result equals the whole-image one. The tile plan
(:func:`esrgan.engines.tiling.tile_plan`) and the image handling (:func:`esrgan.engines.upscale_array`)
are shared by every engine, so all of them cut the same seams.

``upscale`` keeps no state between calls and never modifies the model, so one model may serve
several threads at once.

Memory is planned, not hit: :func:`plan_tile` (in :mod:`esrgan.engines.memory`, re-exported here)
runs the whole image when it fits in the memory available, else the largest tile that does.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, cast, overload

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from esrgan.engines.memory import (
    FIXED_OVERHEAD,
    MEMORY_HEADROOM,
    MIN_TILE,
    MODEL_BYTES_PER_FEATURE,
    InsufficientMemoryError,
    available_memory,
    image_bytes_per_pixel,
    peak_bytes_per_pixel,
    plan_tile,
)
from esrgan.engines.tiling import DEFAULT_TILE_PAD, factor_padding, tile_plan

__all__ = [
    "DEFAULT_TILE_PAD",
    "FIXED_OVERHEAD",
    "MEMORY_HEADROOM",
    "MIN_TILE",
    "MODEL_BYTES_PER_FEATURE",
    "PRECISIONS",
    "InsufficientMemoryError",
    "Precision",
    "available_memory",
    "image_bytes_per_pixel",
    "peak_bytes_per_pixel",
    "plan_tile",
    "upscale",
    "upscale_tensor",
]

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "fp16", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")
EngineName = Literal["auto", "torch", "onnxruntime", "openvino"]


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _run(model: nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """Forward one batch; falls back to fp32 when reduced precision overflows."""
    if dtype is not None:
        with torch.autocast(device_type=x.device.type, dtype=dtype):
            out: torch.Tensor = model(x).float()
        if torch.isfinite(out).all():
            return out
        log.warning("%s output was not finite (overflow); recomputing this tile in fp32", dtype)
    out = model(x).float()
    if not torch.isfinite(out).all():
        raise FloatingPointError("generator output is not finite even in fp32: the weights are broken")
    return out


def _unshuffle_factor(model: nn.Module) -> int:
    return int(getattr(model, "unshuffle", 1))


@torch.inference_mode()
def upscale_tensor(
    model: nn.Module,
    x: torch.Tensor,
    tile: int = 0,
    tile_pad: int = DEFAULT_TILE_PAD,
    precision: Precision = "auto",
) -> torch.Tensor:
    """Upscale an ``(N, C, H, W)`` float tensor in [0, 1]; returns a clamped float32 CPU tensor.

    Args:
        model: the generator; its ``scale`` attribute gives the output ratio.
        x: input batch, any H and W (padded internally to what the network needs).
        tile: tile edge on the input side; 0 runs the whole image at once.
        tile_pad: context around each tile on the input side.
        precision: ``auto`` (fp16 on CUDA, fp32 elsewhere), ``fp32``, ``fp16`` or ``bf16``.
    """
    if x.ndim != 4:
        raise ValueError(f"expected an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    if tile < 0 or tile_pad < 0:
        raise ValueError(f"tile and tile_pad must be non-negative, got {tile} and {tile_pad}")
    scale = int(cast(int, model.scale))
    device = _model_device(model)
    dtype = _autocast_dtype(precision, device)
    # channels_last on CPU too: oneDNN's convolutions run natively in NHWC; NCHW input costs a layout
    # reorder around every convolution (bench/inference.py: ~10-15% faster on an AVX-512 CPU).
    memory_format = torch.channels_last
    n, c, h, w = x.shape
    # Pixel-unshuffle (scales 1 and 2) needs sizes divisible by its factor: mirror-pad, crop later.
    factor = _unshuffle_factor(model)
    ph, pw, mode = factor_padding(h, w, factor)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if mode == "reflect" else "replicate")
    hp, wp = x.shape[-2:]
    plan = tile_plan(hp, wp, tile, tile_pad, factor)
    if len(plan) == 1:
        out = _run(model, x.to(device, memory_format=memory_format), dtype).cpu()
    else:
        out = torch.empty((n, int(getattr(model, "out_ch", c)), hp * scale, wp * scale), dtype=torch.float32)
        for t in plan:
            patch = x[:, :, t.cy0 : t.cy1, t.cx0 : t.cx1].to(device, memory_format=memory_format)
            result = _run(model, patch, dtype)
            oy, ox = (t.y0 - t.cy0) * scale, (t.x0 - t.cx0) * scale
            out[:, :, t.y0 * scale : t.y1 * scale, t.x0 * scale : t.x1 * scale] = result[
                :, :, oy : oy + (t.y1 - t.y0) * scale, ox : ox + (t.x1 - t.x0) * scale
            ].cpu()
    return out[:, :, : h * scale, : w * scale].clamp_(0.0, 1.0)


@overload
def upscale(
    model: nn.Module | Any,
    image: np.ndarray,
    tile: int = ...,
    tile_pad: int = ...,
    precision: Precision = ...,
    engine: EngineName = ...,
) -> np.ndarray: ...
@overload
def upscale(
    model: nn.Module | Any,
    image: Image.Image,
    tile: int = ...,
    tile_pad: int = ...,
    precision: Precision = ...,
    engine: EngineName = ...,
) -> Image.Image: ...


def upscale(
    model: nn.Module | Any,
    image: np.ndarray | Image.Image,
    tile: int = 0,
    tile_pad: int = DEFAULT_TILE_PAD,
    precision: Precision = "auto",
    engine: EngineName = "torch",
) -> np.ndarray | Image.Image:
    """Upscale one image with an RGB generator.

    Args:
        model: an RGB generator such as ``RRDBNet`` (eval mode; it is not modified), or an
            :class:`esrgan.engines.Engine` (then ``engine`` and ``precision`` are its own).
        image: a NumPy array (``HxW`` or ``HxWx1`` grey, ``HxWx3`` RGB, ``HxWx4`` RGBA; uint8, uint16
            or float in [0, 1]) or a PIL image (L, LA, RGB, RGBA, P, I;16, F).
        tile: tile edge in input pixels, 0 for the whole image at once.
        tile_pad: context around each tile in input pixels.
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16`` (reduced precision falls back to fp32
            per tile when its output is not finite). With the torch engine ``auto`` is fp32 on the
            CPU (the reference) and fp16 on CUDA; see :func:`esrgan.engines.load_engine`.
        engine: ``torch`` (default: the reference, no export), ``onnxruntime``, ``openvino``, or
            ``auto``, the fastest engine and precision here within the fidelity bound of torch fp32.
            Engines other than torch run an in-memory ONNX export, compiled once per weights.

    Returns:
        The upscaled image of the same kind: same array layout and dtype, or same PIL mode.
        Grey input is upscaled as RGB and returned as the mean of the output channels; the
        alpha channel of RGBA is upscaled separately, as a grey image.
    """
    from esrgan.engines import Engine, load_engine, precision_for, upscale_array, upscale_pil
    from esrgan.engines.torch_engine import TorchEngine

    if isinstance(model, Engine):
        runner = model
    elif engine == "torch":
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        runner = TorchEngine(model, precision)
    else:
        if isinstance(image, Image.Image):  # 16-bit and float modes are deep; the others 8-bit
            dtype: Any = np.uint16 if image.mode in ("I", "I;16", "I;16B", "I;16L", "F") else np.uint8
        else:
            dtype = np.asarray(image).dtype
        runner = load_engine(model, engine, precision_for(dtype, precision, str(_model_device(model))))
    if isinstance(image, Image.Image):
        return cast(Image.Image, upscale_pil(runner, image, tile, tile_pad))
    return upscale_array(runner, image, tile, tile_pad)
