"""Upscaling images with a generator: whole-image or tiled, any size, RGB/RGBA/grey, 8 or 16 bit.

Tiling keeps memory bounded by the tile size: each tile is run with ``tile_pad`` pixels of
real neighbouring context on every side (clamped at the image border, where the network's own
zero padding applies exactly as on the whole image), and only the tile's own area of the
output is kept. With enough context the tiled result equals the whole-image one.

``upscale`` keeps no state between calls and never modifies the model, so one model may serve
several threads at once.

Memory is planned, not hit (``plan_tile``): the peak of one forward pass grows with its input
area, about ``MODEL_BYTES_PER_FEATURE * num_feat * scale**2`` bytes per input pixel (measured on
CPU: 10 KB per pixel for the paper's x4 model, so a 1400x1000 image needs ~14 GB at once). The
plan runs the whole image when that fits in the memory available, else the largest square tile
(a multiple of 8 pixels, at least ``MIN_TILE``) whose padded forward pass fits beside the
whole-image buffers; when not even that fits, ``InsufficientMemoryError`` says which image size would.
"""

from __future__ import annotations

import logging
import math
import re
import resource
from typing import Literal, cast, overload

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from esrgan.errors import EsrganError

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "fp16", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")
#: Default tile context on the LR side, in pixels. Measured: with 16 px the tiled output of a
#: trained x4 model differs from whole-image output by at most 1 grey level (tests check it).
DEFAULT_TILE_PAD = 16


#: Smallest planned tile edge: below it the context around each tile costs more than the tile itself.
MIN_TILE = 32
#: Peak bytes of a forward pass per input pixel, per ``num_feat * scale**2``. Measured 2.5-2.75 x 4
#: bytes (float32) for x1/x2/x4 at widths 32 and 64 (``peak_bytes_per_pixel``); 3.5 leaves ~25 % margin.
MODEL_BYTES_PER_FEATURE = 3.5 * 4
#: Share of the available memory a plan may use: the allocator, PNG encoding and other threads need the rest.
MEMORY_HEADROOM = 0.85
#: Fixed cost of the interpreter's own allocations during a forward pass (weight reorders, scratch).
FIXED_OVERHEAD = 128 << 20


class InsufficientMemoryError(EsrganError, MemoryError):
    """An image (or a requested tile) that cannot be upscaled in the memory available; one line."""


def peak_bytes_per_pixel(model: nn.Module) -> float:
    """Estimated peak bytes of one forward pass per input pixel (activations, not weights)."""
    scale, feat = int(cast(int, model.scale)), int(getattr(model, "num_feat", 64))
    grow, factor = int(getattr(model, "num_grow", 32)), _unshuffle_factor(model)
    # The full-resolution tail (upsampled features, conv_hr, conv_last) dominates; the dense blocks
    # run at the (unshuffled) input resolution with up to num_feat + 4 * num_grow channels.
    return MODEL_BYTES_PER_FEATURE * feat * scale**2 + 4 * (3 * feat + 8 * grow) / factor**2


def image_bytes_per_pixel(model: nn.Module, channels: int = 3) -> float:
    """Whole-image host buffers per input pixel, which tiling cannot shrink: the float32 output of
    each pass (a non-constant alpha is a second pass), the float32 input, grey/alpha reductions and
    the 8/16-bit result."""
    scale2 = int(cast(int, model.scale)) ** 2
    passes = 2 if channels in (2, 4) else 1
    return scale2 * (4 * 3 * passes + 4 * 4 + 2 * 4) + 4 * 3 * 2 + 2 * channels


def available_memory(device: torch.device | str = "cpu") -> int:
    """Bytes this process can still allocate on ``device``.

    For CUDA, the free device memory. For the CPU, the smallest of the kernel's ``MemAvailable``,
    the cgroup limit minus its usage (containers) and the address-space limit (``ulimit -v``,
    ``prlimit --as``) minus this process's virtual size.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    limits = [_meminfo("MemAvailable")]
    limits.append(_cgroup_headroom())
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft - _self_status("VmSize"))
    known = [v for v in limits if v is not None]
    return max(0, min(known)) if known else 1 << 62


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            m = re.search(rf"^{key}:\s+(\d+) kB", fh.read(), re.M)
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def _self_status(key: str) -> int:
    with open("/proc/self/status") as fh:
        m = re.search(rf"^{key}:\s+(\d+) kB", fh.read(), re.M)
    return int(m.group(1)) * 1024 if m else 0


def _cgroup_headroom() -> int | None:
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),  # v1
    ):
        try:
            with open(limit_file) as fh:
                raw = fh.read().strip()
            with open(usage_file) as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if raw == "max" or int(raw) >= 1 << 60:  # v1 writes "no limit" as a huge number
            return None
        return int(raw) - usage
    return None


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _need(plan_bytes: float) -> str:
    """Free memory a plan of ``plan_bytes`` needs, headroom and overhead included."""
    return _fmt_bytes((plan_bytes + FIXED_OVERHEAD) / MEMORY_HEADROOM)


def plan_tile(
    model: nn.Module,
    height: int,
    width: int,
    tile: int | None = None,
    tile_pad: int = DEFAULT_TILE_PAD,
    channels: int = 3,
    available: int | None = None,
    host_available: int | None = None,
) -> int:
    """Choose (``tile=None``) or check (``tile`` given; 0 = whole image) the tiling of one image.

    The rule: the whole-image buffers (``image_bytes_per_pixel`` x area, on the host) plus one forward
    pass (``peak_bytes_per_pixel`` x its padded area, on the model's device) must fit in
    ``MEMORY_HEADROOM`` of what is available. Automatic planning takes the whole image when it fits,
    else the largest fitting tile, a multiple of 8 input pixels.

    Args:
        available: bytes free on the model's device (default: ``available_memory``).
        host_available: bytes free on the host, for CUDA models (default: ``available_memory("cpu")``).

    Returns:
        The tile edge to pass to ``upscale`` (0: whole image).

    Raises:
        InsufficientMemoryError: nothing fits, or the requested tile does not; the message is one
            line with the largest image (or the tile) that would fit.
    """
    device = _model_device(model)
    if available is None:
        available = available_memory(device)
    if host_available is None:
        host_available = available if device.type == "cpu" else available_memory("cpu")
    per_px = peak_bytes_per_pixel(model)
    fixed = image_bytes_per_pixel(model, channels) * height * width
    if device.type == "cpu":
        budget = MEMORY_HEADROOM * available - FIXED_OVERHEAD - fixed
    else:
        if fixed > MEMORY_HEADROOM * host_available:
            raise InsufficientMemoryError(
                f"{width}x{height} needs {_fmt_bytes(fixed)} of host memory for the image buffers, "
                f"{_fmt_bytes(host_available)} available"
            )
        budget = MEMORY_HEADROOM * available - FIXED_OVERHEAD

    def cost(t: int) -> float:
        """Peak of one forward pass over a ``t``-pixel tile and its context (0: the whole image)."""
        if t == 0 or (t >= height and t >= width):
            return per_px * height * width
        return per_px * min(t + 2 * tile_pad, height) * min(t + 2 * tile_pad, width)

    largest = math.isqrt(max(0, int(budget / per_px))) - 2 * tile_pad
    largest = largest // 8 * 8
    if tile is None:
        if cost(0) <= budget:
            return 0
        if largest >= MIN_TILE:
            return min(largest, max(height, width))
        # Not even the smallest tile: how large an image would fit beside one MIN_TILE tile?
        # (One size step above MIN_TILE, and rounded down, so the size named really is planned.)
        room = (budget + fixed - per_px * (MIN_TILE + 8 + 2 * tile_pad) ** 2) / image_bytes_per_pixel(model, channels)
        megapixels = math.floor(room / 1e5) / 10
        fits = f"images up to about {megapixels:.1f} megapixels fit" if megapixels > 0 else "no image fits"
        raise InsufficientMemoryError(
            f"{width}x{height} does not fit in the {_fmt_bytes(available)} of memory available, not even in "
            f"{MIN_TILE}-pixel tiles (that needs about {_need(fixed + cost(MIN_TILE))} free); {fits}"
        )
    if tile < 0:
        raise ValueError(f"tile must be non-negative, got {tile}")
    if cost(tile) <= budget:
        return tile
    what = "the whole image (--tile 0)" if tile == 0 else f"--tile {tile}"
    hint = f"--tile {largest} fits" if largest >= MIN_TILE else f"not even --tile {MIN_TILE} fits"
    raise InsufficientMemoryError(
        f"{width}x{height}: {what} needs about {_need(cost(tile) + fixed)} free, "
        f"{_fmt_bytes(available)} available; {hint} (leave --tile out to plan automatically)"
    )


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
    ph, pw = (-h) % factor, (-w) % factor
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    hp, wp = x.shape[-2:]
    if tile == 0 or (tile >= hp and tile >= wp):
        out = _run(model, x.to(device, memory_format=memory_format), dtype).cpu()
    else:
        out = torch.empty((n, int(getattr(model, "out_ch", c)), hp * scale, wp * scale), dtype=torch.float32)
        # Tiles and context are whole multiples of the unshuffle factor.
        tile = max(factor, tile // factor * factor)
        tile_pad = -(-tile_pad // factor) * factor
        for y0 in range(0, hp, tile):
            for x0 in range(0, wp, tile):
                y1, x1 = min(y0 + tile, hp), min(x0 + tile, wp)
                cy0, cx0 = max(y0 - tile_pad, 0), max(x0 - tile_pad, 0)
                cy1, cx1 = min(y1 + tile_pad, hp), min(x1 + tile_pad, wp)
                patch = x[:, :, cy0:cy1, cx0:cx1].to(device, memory_format=memory_format)
                result = _run(model, patch, dtype)
                oy, ox = (y0 - cy0) * scale, (x0 - cx0) * scale
                out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = result[
                    :, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
                ].cpu()
    return out[:, :, : h * scale, : w * scale].clamp_(0.0, 1.0)


def _to_float(arr: np.ndarray, peak: float) -> torch.Tensor:
    """HWC array -> (1, C, H, W) float tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(peak).unsqueeze(0)


def _from_float(t: torch.Tensor, peak: float, dtype: np.dtype) -> np.ndarray:
    """(1, C, H, W) float tensor in [0, 1] -> HWC array of ``dtype``, rounded."""
    return t[0].mul_(peak).round_().permute(1, 2, 0).numpy().astype(dtype)  # in place: t is ours, and large


@overload
def upscale(
    model: nn.Module, image: np.ndarray, tile: int = ..., tile_pad: int = ..., precision: Precision = ...
) -> np.ndarray: ...
@overload
def upscale(
    model: nn.Module, image: Image.Image, tile: int = ..., tile_pad: int = ..., precision: Precision = ...
) -> Image.Image: ...


@torch.inference_mode()
def upscale(
    model: nn.Module,
    image: np.ndarray | Image.Image,
    tile: int = 0,
    tile_pad: int = DEFAULT_TILE_PAD,
    precision: Precision = "auto",
) -> np.ndarray | Image.Image:
    """Upscale one image with an RGB generator.

    Args:
        model: an RGB generator such as ``RRDBNet`` (eval mode; it is not modified).
        image: a NumPy array (``HxW`` or ``HxWx1`` grey, ``HxWx3`` RGB, ``HxWx4`` RGBA; uint8 or
            uint16) or a PIL image (L, LA, RGB, RGBA, P, I;16).
        tile: tile edge in input pixels, 0 for the whole image at once.
        tile_pad: context around each tile in input pixels.
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16`` (reduced precision falls back to fp32
            per tile when its output is not finite).

    Returns:
        The upscaled image of the same kind: same array layout and dtype, or same PIL mode.
        Grey input is upscaled as RGB and returned as the mean of the output channels; the
        alpha channel of RGBA is upscaled separately, as a grey image.
    """
    if isinstance(image, Image.Image):
        return _upscale_pil(model, image, tile, tile_pad, precision)
    arr = np.asarray(image)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a uint8 or uint16 image, got {arr.dtype}")
    if arr.ndim == 2:
        return upscale(model, arr[:, :, None], tile, tile_pad, precision)[:, :, 0]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4) or min(arr.shape[:2]) < 1:
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {arr.shape}")
    peak = float(np.iinfo(arr.dtype).max)
    channels = arr.shape[2]
    colour, alpha = (arr[:, :, :-1], arr[:, :, -1:]) if channels in (2, 4) else (arr, None)

    def run(a: np.ndarray) -> torch.Tensor:
        return upscale_tensor(model, _to_float(a, peak), tile, tile_pad, precision)

    if colour.shape[2] == 1:
        result = run(np.repeat(colour, 3, axis=2)).mean(dim=1, keepdim=True)
    else:
        result = run(colour)
    parts = [result]
    if alpha is not None:
        if (alpha == alpha.flat[0]).all():  # constant alpha (usually opaque): nothing to restore
            parts.append(torch.full_like(result[:, :1], float(alpha.flat[0]) / peak))
        else:
            parts.append(run(np.repeat(alpha, 3, axis=2)).mean(dim=1, keepdim=True))
    return _from_float(torch.cat(parts, dim=1) if len(parts) > 1 else result, peak, arr.dtype)


def _upscale_pil(model: nn.Module, image: Image.Image, tile: int, tile_pad: int, precision: Precision) -> Image.Image:
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("I", "I;16", "I;16B", "I;16L"):
        arr = np.asarray(image).astype(np.int64).clip(0, 65535).astype(np.uint16)
        return Image.fromarray(upscale(model, arr, tile, tile_pad, precision))
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")
    return Image.fromarray(upscale(model, np.asarray(image), tile, tile_pad, precision))
