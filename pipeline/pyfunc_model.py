"""The served model: an MLflow pyfunc that takes base64-encoded images and returns upscaled PNGs.

Logged with MLflow's "models from code" (this file is the model's code; nothing is pickled).
The generator travels as the artifact ``generator`` (safetensors, readable by
``esrgan.models.load_generator``, spandrel, chaiNNer).

Request (``POST /invocations``)::

    {"dataframe_split": {"columns": ["image"], "data": [["<base64 PNG or JPEG>"]]}}

Response::

    {"predictions": [{"image": "<base64 PNG>", "width": 256, "height": 256}]}

Limits, checked from the image headers before any pixel is decoded: each row at most
``max_input_pixels`` (model config, or the server's ``ESRGAN_MAX_INPUT_PIXELS`` environment
variable), and the whole request at most ``max_request_pixels`` (``ESRGAN_MAX_REQUEST_PIXELS``;
by default the per-row limit, so one request costs at most one largest image, however many rows
it holds). A row that is not base64, not an image, a decompression bomb or over a limit makes the
request a 400 whose body's ``message`` is one sentence, without a stack trace.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from PIL import Image, UnidentifiedImageError

#: Default largest input accepted by the server (1 megapixel in, 16 out at x4).
DEFAULT_MAX_INPUT_PIXELS = 1_000_000
#: Default tile edge for served requests: bounds the server's memory per request.
DEFAULT_TILE = 256


class BadRequest(MlflowException):
    """A request the server refuses (HTTP 400); its message is one sentence.

    MLflow's scoring server rewrites the message of an ``MlflowException`` raised by ``predict`` to
    ``"Failed to predict data '<the whole request>'. Error: ..."``; this class keeps only the reason,
    so a client sees one sentence and the server does not echo megabytes of base64 back.
    """

    _PREFIX_END = "\nError: "

    @property  # type: ignore[override]
    def message(self) -> str:
        return self._reason

    @message.setter
    def message(self, value: str) -> None:
        value = str(value)
        if value.startswith("Failed to predict data") and self._PREFIX_END in value:
            value = value.rsplit(self._PREFIX_END, 1)[1]
        self._reason = value


def _bad_request(message: str) -> BadRequest:
    return BadRequest(message, error_code=INVALID_PARAMETER_VALUE)


def _raw_bytes(b64: Any, row: int) -> bytes:
    if not isinstance(b64, str) or not b64:
        raise _bad_request(f"row {row}: 'image' must be a non-empty base64 string")
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_request(f"row {row}: 'image' is not valid base64") from None


def image_size(raw: bytes, row: int, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` from an image's header (no pixels decoded), within ``max_pixels``."""
    try:
        with Image.open(io.BytesIO(raw)) as img:
            width, height = img.size
    except Image.DecompressionBombError:
        # Pillow's own limit, far above ours: the header claims a gigantic image.
        raise _bad_request(
            f"row {row}: 'image' declares over {2 * Image.MAX_IMAGE_PIXELS} pixels (a decompression bomb), "
            f"the server limit is {max_pixels}"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _bad_request(f"row {row}: 'image' is not a readable image") from None
    if width * height > max_pixels:
        raise _bad_request(f"row {row}: input {width}x{height} exceeds the server limit of {max_pixels} pixels")
    return width, height


def decode_image(b64: Any, row: int, max_pixels: int) -> np.ndarray:
    """Decode one base64 image, checking its size from the header before decoding pixels."""
    raw = _raw_bytes(b64, row)
    image_size(raw, row, max_pixels)
    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
            if img.mode not in ("L", "LA", "RGB", "RGBA", "I;16"):
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            return np.array(img)
    except Image.DecompressionBombError:  # a header that lied about its size
        raise _bad_request(f"row {row}: 'image' decompresses beyond its declared size") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _bad_request(f"row {row}: 'image' is not a readable image") from None


def check_request(images: list[Any], max_pixels: int, max_request_pixels: int) -> None:
    """Refuse a request from its headers alone: every row's size, then the request's total."""
    total = 0
    for row, b64 in enumerate(images):
        width, height = image_size(_raw_bytes(b64, row), row, max_pixels)
        total += width * height
    if total > max_request_pixels:
        raise _bad_request(
            f"the request's {len(images)} images hold {total} pixels, over the server limit of "
            f"{max_request_pixels} per request; send fewer or smaller images per request"
        )


def encode_png(image: np.ndarray) -> str:
    """Base64 of a PNG of ``image``."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class ESRGANUpscaler(mlflow.pyfunc.PythonModel):
    """Upscales each row's ``image`` (base64) with the packaged generator."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from esrgan.models import load_generator

        config = context.model_config or {}
        self.generator = load_generator(context.artifacts["generator"])
        env_limit = os.environ.get("ESRGAN_MAX_INPUT_PIXELS")
        self.max_pixels = int(env_limit or config.get("max_input_pixels", DEFAULT_MAX_INPUT_PIXELS))
        env_request = os.environ.get("ESRGAN_MAX_REQUEST_PIXELS")
        self.max_request_pixels = int(env_request or config.get("max_request_pixels", self.max_pixels))
        self.tile = int(config.get("tile", DEFAULT_TILE))

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        from esrgan.inference import upscale

        if "image" not in model_input.columns:
            raise _bad_request(f"expected a column 'image', got {list(model_input.columns)}")
        images = model_input["image"].tolist()
        check_request(images, self.max_pixels, getattr(self, "max_request_pixels", self.max_pixels))
        rows = []
        for i, b64 in enumerate(images):
            image = decode_image(b64, i, self.max_pixels)
            out = upscale(self.generator, image, tile=self.tile)
            rows.append({"image": encode_png(out), "width": int(out.shape[1]), "height": int(out.shape[0])})
        return pd.DataFrame(rows, columns=["image", "width", "height"])


mlflow.models.set_model(ESRGANUpscaler())
