"""The served model: an MLflow pyfunc that takes base64-encoded images and returns upscaled PNGs.

Logged with MLflow's "models from code" (this file is the model's code; nothing is pickled).
The generator travels as the artifact ``generator`` (safetensors, readable by
``esrgan.models.load_generator``, spandrel, chaiNNer).

Request (``POST /invocations``)::

    {"dataframe_split": {"columns": ["image"], "data": [["<base64 PNG or JPEG>"]]}}

Response::

    {"predictions": [{"image": "<base64 PNG>", "width": 256, "height": 256}]}

A row that is not base64, not an image, or larger than ``max_input_pixels`` (model config,
overridable with the ``ESRGAN_MAX_INPUT_PIXELS`` environment variable of the server) is a 400
with a one-line reason.
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


def _bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def decode_image(b64: Any, row: int, max_pixels: int) -> np.ndarray:
    """Decode one base64 image, checking its size from the header before decoding pixels."""
    if not isinstance(b64, str) or not b64:
        raise _bad_request(f"row {row}: 'image' must be a non-empty base64 string")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_request(f"row {row}: 'image' is not valid base64") from None
    try:
        with Image.open(io.BytesIO(raw)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise _bad_request(f"row {row}: input {width}x{height} exceeds the server limit of {max_pixels} pixels")
            img.load()
            if img.mode not in ("L", "LA", "RGB", "RGBA", "I;16"):
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            return np.array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _bad_request(f"row {row}: 'image' is not a readable image") from None


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
        self.tile = int(config.get("tile", DEFAULT_TILE))

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        from esrgan.inference import upscale

        if "image" not in model_input.columns:
            raise _bad_request(f"expected a column 'image', got {list(model_input.columns)}")
        rows = []
        for i, b64 in enumerate(model_input["image"].tolist()):
            image = decode_image(b64, i, self.max_pixels)
            out = upscale(self.generator, image, tile=self.tile)
            rows.append({"image": encode_png(out), "width": int(out.shape[1]), "height": int(out.shape[0])})
        return pd.DataFrame(rows, columns=["image", "width", "height"])


mlflow.models.set_model(ESRGANUpscaler())
