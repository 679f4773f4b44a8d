"""Memory planning of one upscale, for every engine: the whole image when it fits, else the largest tile.

Memory is planned, not hit (``plan_tile``): the peak of one forward pass grows with its input
area, about ``MODEL_BYTES_PER_FEATURE * num_feat * scale**2`` bytes per input pixel (measured on
CPU with torch: 10 KB per pixel for the paper's x4 model, so a 1400x1000 image needs ~14 GB at
once). The plan runs the whole image when that fits in the memory available, else the largest
square tile (a multiple of 8 pixels, at least ``MIN_TILE``) whose padded forward pass fits beside
the whole-image buffers; when not even that fits, ``InsufficientMemoryError`` says which image
size would. The same estimate serves every engine: measured peak resident bytes per input pixel
(one 400x300 image, widths 32 / 64, 2-core Zen 4) against the estimate of 8.1 / 15.6 KB: torch fp32
5.0 / 9.8 KB, ONNX Runtime 6.5 / 11.9 KB, OpenVINO fp32 5.3 KB, OpenVINO bf16 2.9 / 5.1 KB.

A "model" here is anything with ``scale``, ``num_feat``, ``num_grow`` and ``unshuffle``
attributes: an ``RRDBNet`` or an :class:`esrgan.engines.Engine`. Nothing here imports torch
unless a CUDA device is asked about.
"""

from __future__ import annotations

import math
import re
import resource
from typing import Any

from esrgan.engines.tiling import DEFAULT_TILE_PAD
from esrgan.errors import EsrganError

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


def peak_bytes_per_pixel(model: Any) -> float:
    """Estimated peak bytes of one forward pass per input pixel (activations, not weights)."""
    scale, feat = int(model.scale), int(getattr(model, "num_feat", 64))
    grow, factor = int(getattr(model, "num_grow", 32)), int(getattr(model, "unshuffle", 1))
    # The full-resolution tail (upsampled features, conv_hr, conv_last) dominates; the dense blocks
    # run at the (unshuffled) input resolution with up to num_feat + 4 * num_grow channels.
    return MODEL_BYTES_PER_FEATURE * feat * scale**2 + 4 * (3 * feat + 8 * grow) / factor**2


def image_bytes_per_pixel(model: Any, channels: int = 3) -> float:
    """Whole-image host buffers per input pixel, which tiling cannot shrink: the float32 output of
    each pass (a non-constant alpha is a second pass), the float32 input, grey/alpha reductions and
    the 8/16-bit result."""
    scale2 = int(model.scale) ** 2
    passes = 2 if channels in (2, 4) else 1
    return scale2 * (4 * 3 * passes + 4 * 4 + 2 * 4) + 4 * 3 * 2 + 2 * channels


def available_memory(device: Any = "cpu") -> int:
    """Bytes this process can still allocate on ``device``.

    For CUDA, the free device memory. For the CPU, the smallest of the kernel's ``MemAvailable``,
    the cgroup limit minus its usage (containers) and the address-space limit (``ulimit -v``,
    ``prlimit --as``) minus this process's virtual size.
    """
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
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
    model: Any,
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
    device = model_device(model)
    if available is None:
        available = available_memory(device)
    if host_available is None:
        host_available = available if device == "cpu" else available_memory("cpu")
    per_px = peak_bytes_per_pixel(model)
    fixed = image_bytes_per_pixel(model, channels) * height * width
    if device == "cpu":
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


def model_device(model: Any) -> str:
    """``"cpu"`` or ``"cuda:N"``: where a torch module's weights are, or an engine's ``device``."""
    if hasattr(model, "parameters"):
        dev = next(model.parameters()).device
        return "cpu" if dev.type == "cpu" else str(dev)
    return str(getattr(model, "device", "cpu"))
