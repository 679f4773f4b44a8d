"""Reading and writing images as NumPy arrays, with one-line errors naming the file.

8-bit images go through Pillow. 16-bit colour PNGs, which Pillow silently reduces to 8 bits,
go through OpenCV so their precision survives.

Floating-point TIFFs (32- or 64-bit samples, grey, RGB or RGBA, as written by HDR and scientific
tools) follow those tools' convention: 0.0 is black and 1.0 is white. They are read as 16-bit
images (``round(x * 65535)``, so no precision an upscaler could use is lost); values outside
[0, 1] are clipped (with a warning) and NaN counts as black.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, TiffImagePlugin, UnidentifiedImageError

from esrgan.errors import EsrganError
from esrgan.fileio import atomic_write

#: File suffixes treated as images when a folder is given.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


log = logging.getLogger(__name__)


class ImageReadError(EsrganError, ValueError):
    """An unreadable image; the message is one line naming the file."""


def is_image_path(path: Path) -> bool:
    """Whether ``path`` has an image suffix (case-insensitive)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def _png_bit_depth(path: Path) -> int | None:
    with open(path, "rb") as fh:
        head = fh.read(26)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or len(head) < 26:
        return None
    return head[24]


def float_to_uint16(arr: np.ndarray, name: str = "image") -> np.ndarray:
    """Floating-point pixels, 0.0 black and 1.0 white, as uint16 (``round(x * 65535)``).

    Values outside [0, 1] are clipped (logged as a warning naming ``name``); NaN becomes 0.
    """
    values = np.asarray(arr)
    finite = np.isfinite(values)
    if finite.any():
        low, high = float(values[finite].min()), float(values[finite].max())
        if low < -1e-3 or high > 1 + 1e-3:
            log.warning("%s: floating-point values span %.4g..%.4g; read as 0..1 and clipped", name, low, high)
    scaled = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0).clip(0.0, 1.0) * 65535.0
    result: np.ndarray = np.rint(scaled).astype(np.uint16)
    return result


#: TIFF tags read from a float TIFF's header.
_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_BITS, _TIFF_SAMPLES, _TIFF_SAMPLE_FORMAT = 256, 257, 258, 277, 339
_TIFF_IEEE_FLOAT = 3


def _float_tiff_header(path: Path) -> tuple[int, int, int, int] | None:
    """``(width, height, samples, bits)`` of a TIFF whose first image holds floating-point samples, else None.

    Reads the first image directory only (Pillow cannot open most float TIFFs, but parses their tags).
    """
    with open(path, "rb") as fh:
        head = fh.read(8)
        if head[:4] not in (b"II*\x00", b"MM\x00*"):
            return None
        try:
            ifd = TiffImagePlugin.ImageFileDirectory_v2(head)
            fh.seek(ifd.next)
            ifd.load(fh)
        except (OSError, SyntaxError, ValueError, KeyError, struct.error):
            return None

    def first(tag: int, default: int) -> int:
        value = ifd.get(tag, default)
        return int(value[0] if isinstance(value, tuple) and value else value)

    if first(_TIFF_SAMPLE_FORMAT, 1) != _TIFF_IEEE_FLOAT:
        return None
    return first(_TIFF_WIDTH, 0), first(_TIFF_HEIGHT, 0), first(_TIFF_SAMPLES, 1), first(_TIFF_BITS, 32)


def _check_float_tiff(path: Path, header: tuple[int, int, int, int]) -> None:
    width, height, samples, bits = header
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    if limit and width * height > limit:
        raise ImageReadError(
            f"{path}: refused, image size ({width * height} pixels) exceeds limit of {limit} pixels "
            "(a decompression bomb?)"
        )
    if samples not in (1, 3, 4) or bits not in (32, 64) or min(width, height) < 1:
        raise ImageReadError(
            f"{path}: a {bits}-bit floating-point TIFF with {samples} channel(s) is not supported; "
            "save it with 32-bit float grey, RGB or RGBA samples (or as a 16-bit PNG)"
        )


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV prints decoder failures to stderr itself; we report them in one line instead."""
    import cv2

    logging_ = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_ is None:
        yield
        return
    level = logging_.getLogLevel()
    logging_.setLogLevel(logging_.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_.setLogLevel(level)


def _read_float_tiff(path: Path, header: tuple[int, int, int, int]) -> np.ndarray:
    import cv2

    _check_float_tiff(path, header)
    with _quiet_opencv():
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype.kind != "f":
        raise ImageReadError(f"{path}: corrupt or unsupported floating-point TIFF")
    if arr.ndim == 3:  # BGR(A) to RGB(A); cvtColor has no float64
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]
    return float_to_uint16(arr, str(path))


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        with open(path, "rb") as fh:
            empty = not fh.read(1)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if empty:
        raise ImageReadError(f"{path}: empty file")


def _bomb(path: Path, exc: Exception) -> ImageReadError:
    """Pillow refuses images past ``2 * Image.MAX_IMAGE_PIXELS`` before decoding (their header may lie)."""
    return ImageReadError(f"{path}: refused, {str(exc).split(',')[0].lower()} (a decompression bomb?)")


@contextlib.contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """PIL's exceptions while opening or decoding ``path`` as one-line :class:`ImageReadError`."""
    try:
        yield
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image") from None
    except Image.DecompressionBombError as exc:
        raise _bomb(path, exc) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: corrupt or truncated image ({str(exc).splitlines()[0]})") from None


def image_info(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """``(width, height, channels)`` of an image file from its header, without decoding the pixels.

    ``channels`` is what ``read_image`` returns: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.

    Raises:
        ImageReadError: missing, empty, non-image files and decompression bombs.
    """
    path = Path(path)
    _check_file(path)
    header = _float_tiff_header(path)
    if header is not None:
        _check_float_tiff(path, header)
        return header[0], header[1], header[2]
    with _read_errors(path), Image.open(path) as img:
        width, height = img.size
        mode = img.mode
        if mode == "P":
            channels = 4 if "transparency" in img.info else 3
        elif mode in ("1", "L", "I", "F") or mode.startswith(("I;", "F;")):
            channels = 1
        else:
            channels = {"LA": 2, "La": 2, "RGBA": 4, "RGBa": 4}.get(mode, 3)
    return width, height, channels


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as ``HxW`` (grey), ``HxWx2`` (grey+alpha), ``HxWx3`` (RGB) or ``HxWx4`` (RGBA).

    Returns uint8, or uint16 for 16-bit and floating-point files (floats: 0.0 black, 1.0 white,
    clipped; see the module docstring). Palette images become RGB or RGBA.

    Raises:
        ImageReadError: missing, empty, truncated or non-image files.
    """
    path = Path(path)
    _check_file(path)
    header = _float_tiff_header(path)
    if header is not None:
        return _read_float_tiff(path, header)
    if _png_bit_depth(path) == 16:
        import cv2

        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ImageReadError(f"{path}: corrupt 16-bit PNG")
        if arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        return arr
    with _read_errors(path), Image.open(path) as img:
        img.load()
        mode = img.mode
        if mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        elif mode in ("I", "I;16", "I;16B", "I;16L"):
            return np.asarray(img).astype(np.int64).clip(0, 65535).astype(np.uint16)
        elif mode.startswith("F"):  # 32-bit float grey that is not a TIFF (0.0 black, 1.0 white)
            return float_to_uint16(np.asarray(img), str(path))
        elif mode == "1":
            img = img.convert("L")
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            img = img.convert("RGB")  # CMYK, YCbCr, ...
        return np.array(img)


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Atomically write an array (as returned by ``read_image``) in the format of ``path``'s suffix."""
    path = Path(path)
    arr = np.asarray(image)
    if arr.dtype == np.uint16 and (arr.ndim == 3 and arr.shape[2] in (3, 4)):
        import cv2

        bgr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR)

        def _write16(tmp: str) -> None:
            ok, buf = cv2.imencode(path.suffix or ".png", bgr)
            if not ok:
                raise ValueError(f"{path}: cannot encode a 16-bit image as {path.suffix}")
            Path(tmp).write_bytes(buf.tobytes())

        return atomic_write(path, _write16)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image format {path.suffix!r}")
    img = Image.fromarray(arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
    return atomic_write(path, lambda tmp: img.save(tmp, format=fmt))
