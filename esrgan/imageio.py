"""Reading and writing images as NumPy arrays, with one-line errors naming the file.

8-bit images go through Pillow. 16-bit colour PNGs, which Pillow silently reduces to 8 bits,
go through OpenCV so their precision survives.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from esrgan.errors import EsrganError
from esrgan.fileio import atomic_write

#: File suffixes treated as images when a folder is given.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


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


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
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

    Returns uint8, or uint16 for 16-bit files. Palette images become RGB or RGBA.

    Raises:
        ImageReadError: missing, empty, truncated or non-image files.
    """
    path = Path(path)
    _check_file(path)
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
        elif mode == "1" or mode.startswith("F"):
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
