"""The served model: an MLflow pyfunc that takes base64-encoded images and returns upscaled PNGs.

Logged with MLflow's "models from code" (this file is the model's code; nothing is pickled).
The generator travels as the artifact ``generator`` (safetensors, readable by
``esrgan.models.load_generator``, spandrel, chaiNNer) and as ``onnx`` (``model.onnx``).

Engine: the server upscales with the fastest engine installed (``esrgan.engines``: OpenVINO or ONNX
Runtime on ``model.onnx``, bf16 where the CPU has it and the output stays within the fidelity bound
of PyTorch fp32), and falls back to PyTorch on the generator when no ONNX engine is installed or the
version has no ``model.onnx``. ``ESRGAN_ENGINE`` (``auto``, ``openvino``, ``onnxruntime``, ``torch``)
and ``ESRGAN_PRECISION`` (``auto``, ``fp32``, ``bf16``, ``fp16``) on the server, or ``engine`` /
``precision`` in the model config, pin them. This module imports no torch: the torch-free serving
image (``Dockerfile.serve``) loads it.

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

The server never echoes the request: MLflow's scoring server quotes the whole body in some of its
own 400s (a malformed JSON body, a missing column...), so loading this model into ``mlflow models
serve`` wraps the server's ``invocations`` (:func:`guard_scoring_server`): every error message
keeps at most 40 characters of each piece of the request it quotes and :data:`MAX_MESSAGE` in
all, without the stack trace.

A 32-bit float grey image (TIFF mode ``F``) is read as 0.0 black .. 1.0 white, like ``esrgan upscale``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc.model import PythonModel, PythonModelContext  # mlflow.pyfunc.X is a lazy module: Any to mypy
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    from esrgan.inference import Precision  # imported by name only: it imports torch

#: Default largest input accepted by the server (1 megapixel in, 16 out at x4).
DEFAULT_MAX_INPUT_PIXELS = 1_000_000
#: Default tile edge for served requests: bounds the server's memory per request.
DEFAULT_TILE = 256
#: Longest error message the server sends back (and logs): the request is never quoted whole.
MAX_MESSAGE = 300
#: Longest piece of the request (a column name...) quoted in an error message.
MAX_QUOTE = 100
#: MLflow's messages quote the request between '...'; a quote longer than this keeps 40 characters.
MAX_QUOTED = 60

log = logging.getLogger(__name__)

#: ``upscale(image, tile) -> image``: what ``predict`` calls for each row.
Upscale = Callable[[np.ndarray, int], np.ndarray]


def clip(text: object, limit: int = MAX_QUOTE) -> str:
    """``str(text)`` cut to ``limit`` characters, with the number left out."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


class BadRequest(MlflowException):
    """A request the server refuses (HTTP 400); its message is one sentence.

    MLflow's scoring server rewrites the message of an ``MlflowException`` raised by ``predict`` to
    ``"Failed to predict data '<the whole request>'. Error: ..."``; this class keeps only the reason,
    so a client sees one sentence and the server does not echo megabytes of base64 back.
    """

    _PREFIX_END = "\nError: "

    @property
    def message(self) -> str:
        return self._reason

    @message.setter
    def message(self, value: str) -> None:
        value = str(value)
        if value.startswith("Failed to predict data") and self._PREFIX_END in value:
            value = value.rsplit(self._PREFIX_END, 1)[1]
        self._reason = value


def safe_message(exc: BaseException) -> str:
    """The reason of a scoring-server error, without the request it may quote.

    MLflow's messages put the request after ``Input:`` or inside ``Failed to predict data '...'``;
    a body that is not JSON or not UTF-8 becomes a short sentence naming where it broke.
    """
    cause = exc.__cause__
    if isinstance(cause, json.JSONDecodeError):
        return f"the request body is not valid JSON ({cause.msg} at line {cause.lineno} column {cause.colno})"
    if isinstance(cause, UnicodeDecodeError):
        return f"the request body is not UTF-8 ({cause.reason} at byte {cause.start})"
    message = str(getattr(exc, "message", exc))
    if message.startswith("Failed to predict data") and BadRequest._PREFIX_END in message:
        message = message.rsplit(BadRequest._PREFIX_END, 1)[1]
    parts = " ".join(message.split("\nInput:", 1)[0].split()).split("'")
    parts[1::2] = [q if len(q) <= MAX_QUOTED else f"{q[:40]}..." for q in parts[1::2]]  # inside '...'
    return clip("'".join(parts), MAX_MESSAGE)


def guard_scoring_server() -> None:
    """Make MLflow's scoring server, if it runs in this process, answer errors without echoing the request.

    ``mlflow models serve`` loads this file (the model's code) before it starts answering; its
    ``invocations`` is looked up per request, so wrapping it here covers every request. Outside a
    server (the module not imported) this does nothing; wrapping twice is avoided.
    """
    server = sys.modules.get("mlflow.pyfunc.scoring_server")
    original = getattr(server, "invocations", None)
    if original is None or getattr(original, "_esrgan_guarded", False):
        return

    @functools.wraps(original)
    def invocations(*args: Any, **kwargs: Any) -> Any:
        try:
            result = original(*args, **kwargs)
        except MlflowException as exc:
            reason = safe_message(exc)
            log.warning("refused a request: %s", reason)
            exc.message = reason
            exc.json_kwargs.pop("stack_trace", None)
            raise exc from None
        if getattr(result, "status", 200) != 200 and isinstance(getattr(result, "response", None), str):
            result = result._replace(response=clip(result.response, MAX_MESSAGE))
        return result

    invocations._esrgan_guarded = True  # type: ignore[attr-defined]
    server.invocations = invocations  # type: ignore[union-attr]


def _bad_request(message: str) -> BadRequest:
    return BadRequest(message, error_code=INVALID_PARAMETER_VALUE)


def _raw_bytes(b64: object, row: int) -> bytes:
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
        assert Image.MAX_IMAGE_PIXELS is not None  # Pillow raises this only while its limit is set
        raise _bad_request(
            f"row {row}: 'image' declares over {2 * Image.MAX_IMAGE_PIXELS} pixels (a decompression bomb), "
            f"the server limit is {max_pixels}"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _bad_request(f"row {row}: 'image' is not a readable image") from None
    if width * height > max_pixels:
        raise _bad_request(f"row {row}: input {width}x{height} exceeds the server limit of {max_pixels} pixels")
    return width, height


def decode_image(b64: object, row: int, max_pixels: int) -> np.ndarray:
    """Decode one base64 image, checking its size from the header before decoding pixels."""
    raw = _raw_bytes(b64, row)
    image_size(raw, row, max_pixels)
    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
            if img.mode == "F":  # float grey: 0.0 black .. 1.0 white, as esrgan.imageio reads it
                from esrgan.imageio import float_to_uint16

                return float_to_uint16(np.asarray(img), f"row {row}")
            if img.mode not in ("L", "LA", "RGB", "RGBA", "I;16"):
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            return np.array(img)
    except Image.DecompressionBombError:  # a header that lied about its size
        raise _bad_request(f"row {row}: 'image' decompresses beyond its declared size") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _bad_request(f"row {row}: 'image' is not a readable image") from None


def check_request(images: Sequence[object], max_pixels: int, max_request_pixels: int) -> None:
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


#: The precisions ``esrgan.inference.upscale`` runs, by name.
_TORCH_PRECISIONS: dict[str, Precision] = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}


class ModelLoadError(RuntimeError):
    """The served model cannot be loaded here (no engine for it); the message is one sentence."""


def torch_upscaler(generator_file: str, precision: str = "fp32") -> Upscale:
    """PyTorch on the generator file (``precision`` ``auto`` means fp32 here)."""
    try:
        from esrgan.inference import upscale
        from esrgan.models import load_generator
    except ImportError as exc:
        raise ModelLoadError(
            f"no ONNX engine (openvino, onnxruntime) and no torch here ({exc}): install one of them"
        ) from None
    generator = load_generator(generator_file)
    chosen = _TORCH_PRECISIONS.get("fp32" if precision == "auto" else precision)
    if chosen is None:
        raise ModelLoadError(f"precision {precision!r}: expected auto, fp32, bf16 or fp16")

    def run(image: np.ndarray, tile: int) -> np.ndarray:
        return upscale(generator, image, tile=tile, precision=chosen)

    return run


def load_upscaler(artifacts: dict[str, str], engine: str = "auto", precision: str = "auto") -> tuple[Upscale, str]:
    """The fastest allowed way to upscale with a logged model's files, and its name (``openvino bf16``...).

    ``engine`` ``torch`` (or a version without ``model.onnx``) runs PyTorch on ``generator``, as the
    server did before the engines; any other choice builds an :mod:`esrgan.engines` engine on
    ``onnx``. With ``auto``, a model whose ONNX file no engine here can run (none installed, a file
    without the export's metadata, a copy of ``esrgan`` older than the engines) falls back to PyTorch.
    """
    onnx = artifacts.get("onnx")
    if engine != "torch" and onnx:
        try:
            from esrgan import engines
        except ImportError as exc:  # the version's own copy of esrgan has no engines
            if engine != "auto":
                raise ModelLoadError(f"engine {engine!r} asked for, but this model's code has none ({exc})") from None
            log.warning("no esrgan.engines in this model's code (%s): PyTorch serves it", exc)
        else:
            try:
                runner = engines.load_engine(onnx, engine=engine, precision=precision)
            except (engines.EngineUnavailable, engines.EngineLoadError) as exc:
                if engine != "auto":
                    raise ModelLoadError(str(exc)) from None
                log.warning("no ONNX engine for this model (%s): PyTorch serves it", exc)
            except ValueError as exc:  # an unknown engine or precision name
                raise ModelLoadError(str(exc)) from None
            else:
                # As esrgan.upscale does: under precision auto, 16-bit (and float) images get an fp32
                # engine, built on the first such request (bf16 keeps 8 significant bits).
                by_precision = {precision: runner}
                lock = threading.Lock()
                precision_for = getattr(engines, "precision_for", lambda dtype, p: p)  # older packaged copies

                def run(image: np.ndarray, tile: int) -> np.ndarray:
                    wanted = precision_for(image.dtype, precision) if precision == "auto" else precision
                    with lock:
                        if wanted not in by_precision:
                            by_precision[wanted] = engines.load_engine(onnx, engine=engine, precision=wanted)
                        chosen = by_precision[wanted]
                    return engines.upscale_array(chosen, image, tile=tile)

                return run, f"{runner.name} {runner.precision}"
    if "generator" not in artifacts:
        raise ModelLoadError("the model has neither an ONNX file an engine can run nor a generator file")
    chosen = "fp32" if precision == "auto" else precision
    return torch_upscaler(artifacts["generator"], chosen), f"torch {chosen}"


class ESRGANUpscaler(PythonModel):
    """Upscales each row's ``image`` (base64) with the packaged model, through the fastest engine."""

    def load_context(self, context: PythonModelContext) -> None:
        config = context.model_config or {}
        engine = os.environ.get("ESRGAN_ENGINE") or config.get("engine", "auto")
        precision = os.environ.get("ESRGAN_PRECISION") or config.get("precision", "auto")
        self.upscale, self.engine = load_upscaler(dict(context.artifacts), engine, precision)
        log.warning("serving with %s", self.engine)  # warning: MLflow's server shows no info lines
        env_limit = os.environ.get("ESRGAN_MAX_INPUT_PIXELS")
        self.max_pixels = int(env_limit or config.get("max_input_pixels", DEFAULT_MAX_INPUT_PIXELS))
        env_request = os.environ.get("ESRGAN_MAX_REQUEST_PIXELS")
        self.max_request_pixels = int(env_request or config.get("max_request_pixels", self.max_pixels))
        self.tile = int(config.get("tile", DEFAULT_TILE))

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if "image" not in model_input.columns:
            raise _bad_request(f"expected a column 'image', got {clip(list(model_input.columns))}")
        images = model_input["image"].tolist()
        check_request(images, self.max_pixels, getattr(self, "max_request_pixels", self.max_pixels))
        rows = []
        for i, b64 in enumerate(images):
            image = decode_image(b64, i, self.max_pixels)
            out = self.upscale(image, self.tile)
            rows.append({"image": encode_png(out), "width": int(out.shape[1]), "height": int(out.shape[0])})
        # Annotated: pandas-stubs types the constructor for Python >= 3.11 only (mypy checks 3.10).
        answer: pd.DataFrame = pd.DataFrame(rows, columns=["image", "width", "height"])
        return answer


guard_scoring_server()
mlflow.models.set_model(ESRGANUpscaler())
