"""The engine interface, and the NumPy half of upscaling: tiles, colour modes, bit depths.

An :class:`Engine` runs one forward pass of a generator on an ``(N, C, H, W)`` float32 NumPy
array. Everything around it is shared by every engine and needs neither torch nor any runtime:
the tile plan (:mod:`esrgan.engines.tiling`), the padding for scales 1 and 2, and in
:func:`upscale_array` grey, RGBA, 8/16-bit and floating-point images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from esrgan.engines.metadata import ModelInfo
from esrgan.engines.tiling import DEFAULT_TILE_PAD, factor_padding, tile_plan

log = logging.getLogger(__name__)

#: Engine names, and the precisions an engine can be asked for (``auto`` is resolved by the loader).
ENGINES: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


class Engine:
    """A generator compiled for one engine and precision, run on NumPy arrays.

    Attributes:
        name: ``torch``, ``onnxruntime`` or ``openvino``.
        precision: the precision it really computes in (``fp32``, ``bf16``, ``fp16``).
        info: the generator's shape facts (scale, channels, widths, weights digest).
        device: ``cpu`` (or ``cuda:N`` for torch).

    Engines keep no per-call state: one engine may serve several threads at once.
    """

    name = "engine"

    def __init__(self, info: ModelInfo, precision: str, device: str = "cpu") -> None:
        self.info, self.precision, self.device = info, precision, device
        #: Makes the same model in fp32, for tiles whose reduced-precision output overflows.
        self._fp32_factory: Callable[[], Engine] | None = None
        self._fp32: Engine | None = None

    # The attributes memory planning (esrgan.engines.memory) reads, as on an RRDBNet.
    @property
    def scale(self) -> int:
        return self.info.scale

    @property
    def unshuffle(self) -> int:
        return self.info.unshuffle

    @property
    def num_feat(self) -> int:
        return self.info.num_feat

    @property
    def num_grow(self) -> int:
        return self.info.num_grow

    @property
    def in_ch(self) -> int:
        return self.info.in_ch

    @property
    def out_ch(self) -> int:
        return self.info.out_ch

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.precision} x{self.scale} on {self.device}>"

    def run(self, x: np.ndarray) -> np.ndarray:
        """One forward pass: ``(N, in_ch, H, W)`` float32 (H, W multiples of ``unshuffle``) to the raw,
        unclamped ``(N, out_ch, sH, sW)`` float32 output."""
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        """:meth:`run`, recomputed in fp32 when reduced precision overflowed (not finite)."""
        out = self.run(x)
        if np.isfinite(out).all():
            return out
        if self.precision != "fp32" and self._fp32_factory is not None:
            log.warning(
                "%s %s output was not finite (overflow); recomputing this tile in fp32", self.name, self.precision
            )
            if self._fp32 is None:
                self._fp32 = self._fp32_factory()
            out = self._fp32.run(x)
            if np.isfinite(out).all():
                return out
        raise FloatingPointError("generator output is not finite even in fp32: the weights are broken")

    def upscale_nchw(self, x: np.ndarray, tile: int = 0, tile_pad: int = DEFAULT_TILE_PAD) -> np.ndarray:
        """Upscale an ``(N, C, H, W)`` float array in [0, 1], any H and W, whole or in tiles.

        Returns a new float32 array clamped to [0, 1]. The tiles are those of
        :func:`esrgan.engines.tiling.tile_plan`, the same as the torch path's.
        """
        if x.ndim != 4:
            raise ValueError(f"expected an (N, C, H, W) array, got shape {x.shape}")
        x = np.asarray(x, dtype=np.float32)
        n, _, h, w = x.shape
        scale, factor = self.scale, self.unshuffle
        ph, pw, mode = factor_padding(h, w, factor)
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode)
        hp, wp = x.shape[-2:]
        plan = tile_plan(hp, wp, tile, tile_pad, factor)
        if len(plan) == 1:
            out = self.forward(np.ascontiguousarray(x))
        else:
            out = np.empty((n, self.out_ch, hp * scale, wp * scale), dtype=np.float32)
            for t in plan:
                result = self.forward(np.ascontiguousarray(x[:, :, t.cy0 : t.cy1, t.cx0 : t.cx1]))
                oy, ox = (t.y0 - t.cy0) * scale, (t.x0 - t.cx0) * scale
                out[:, :, t.y0 * scale : t.y1 * scale, t.x0 * scale : t.x1 * scale] = result[
                    :, :, oy : oy + (t.y1 - t.y0) * scale, ox : ox + (t.x1 - t.x0) * scale
                ]
        out = out[:, :, : h * scale, : w * scale]
        return np.clip(out, 0.0, 1.0, out=out)  # in place: ``out`` is ours (engines return fresh arrays)


def _as_float(a: np.ndarray, peak: float | None) -> np.ndarray:
    """HWC array -> (1, C, H, W) float32 in [0, 1]; floats are clipped and NaN becomes 0."""
    x = np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32)
    if peak is None:
        np.nan_to_num(x, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        np.clip(x, 0.0, 1.0, out=x)
    else:
        x /= peak
    return x


def upscale_array(engine: Engine, image: np.ndarray, tile: int = 0, tile_pad: int = DEFAULT_TILE_PAD) -> np.ndarray:
    """Upscale one image array with an RGB generator engine.

    Args:
        engine: from :func:`esrgan.engines.load_engine`.
        image: ``HxW`` or ``HxWx1`` grey, ``HxWx2`` grey + alpha, ``HxWx3`` RGB or ``HxWx4`` RGBA;
            uint8, uint16, or floating point (0.0 black, 1.0 white; clipped, NaN read as 0).
        tile: tile edge in input pixels, 0 for the whole image at once.
        tile_pad: context around each tile in input pixels.

    Returns:
        The upscaled image with the same layout and dtype (integers rounded). Grey input is
        upscaled as RGB and returned as the mean of the output channels; the alpha channel is
        upscaled separately, as a grey image (a constant alpha is simply repeated).
    """
    arr = np.asarray(image)
    if arr.dtype in (np.uint8, np.uint16):
        peak: float | None = float(np.iinfo(arr.dtype).max)
    elif arr.dtype.kind == "f":
        peak = None
    else:
        raise ValueError(f"expected a uint8, uint16 or floating-point image, got {arr.dtype}")
    if arr.ndim == 2:
        return upscale_array(engine, arr[:, :, None], tile, tile_pad)[:, :, 0]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4) or min(arr.shape[:2]) < 1:
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {arr.shape}")
    channels = arr.shape[2]
    colour, alpha = (arr[:, :, :-1], arr[:, :, -1:]) if channels in (2, 4) else (arr, None)

    def run(a: np.ndarray) -> np.ndarray:
        return engine.upscale_nchw(_as_float(a, peak), tile, tile_pad)

    if colour.shape[2] == 1:
        result = run(np.repeat(colour, 3, axis=2)).mean(axis=1, keepdims=True, dtype=np.float32)
    else:
        result = run(colour)
    parts = [result]
    if alpha is not None:
        first = alpha.flat[0]
        if (alpha == first).all():  # constant alpha (usually opaque): nothing to restore
            value = float(first) / peak if peak is not None else float(np.clip(np.nan_to_num(first), 0.0, 1.0))
            parts.append(np.full_like(result[:, :1], value))
        else:
            parts.append(run(np.repeat(alpha, 3, axis=2)).mean(axis=1, keepdims=True, dtype=np.float32))
    out: np.ndarray = (np.concatenate(parts, axis=1) if len(parts) > 1 else result)[0].transpose(1, 2, 0)
    if peak is None:
        return np.asarray(out.astype(arr.dtype))
    out = np.multiply(out, peak, dtype=np.float32)  # a fresh contiguous array, rounded in place
    np.rint(out, out=out)
    return np.asarray(out.astype(arr.dtype))


def upscale_pil(engine: Engine, image: Any, tile: int = 0, tile_pad: int = DEFAULT_TILE_PAD) -> Any:
    """:func:`upscale_array` for a PIL image (L, LA, RGB, RGBA, P, I;16, F); returns the same mode."""
    from PIL import Image

    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("I", "I;16", "I;16B", "I;16L"):
        arr = np.asarray(image).astype(np.int64).clip(0, 65535).astype(np.uint16)
        return Image.fromarray(upscale_array(engine, arr, tile, tile_pad))
    elif mode == "F":
        return Image.fromarray(upscale_array(engine, np.asarray(image, dtype=np.float32), tile, tile_pad))
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")
    return Image.fromarray(upscale_array(engine, np.asarray(image), tile, tile_pad))
