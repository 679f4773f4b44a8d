"""The served model's limits: decompression bombs, oversized rows and oversized requests are 400s
with one sentence. The pyfunc is tested in-process, and the bomb once through a real
``mlflow models serve`` over HTTP."""

from __future__ import annotations

import base64
import io
import json
import struct
import urllib.error
import urllib.request
import warnings
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from esrgan.models import RRDBNet, save_generator
from pipeline.registry.pyfunc_model import BadRequest, ESRGANUpscaler, load_upscaler


def header_only_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width x height`` RGB pixels, with no pixel data: a few dozen bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def png_b64(h: int, w: int) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return b64(buf.getvalue())


@pytest.fixture(scope="module")
def upscaler(tmp_path_factory: pytest.TempPathFactory) -> ESRGANUpscaler:
    torch.manual_seed(0)
    gen = tmp_path_factory.mktemp("gen") / "g.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        save_generator(RRDBNet(num_feat=8, num_block=1, num_grow=4), gen)
    model = ESRGANUpscaler()
    model.upscale, model.engine = load_upscaler({"generator": str(gen)}, "torch")
    model.max_pixels, model.max_request_pixels, model.tile = 400, 600, 256
    return model


def predict(model: ESRGANUpscaler, *images: str) -> pd.DataFrame:
    return model.predict(None, pd.DataFrame({"image": list(images)}))  # type: ignore[arg-type]


def assert_one_sentence(exc: BadRequest, *parts: str) -> None:
    body = json.loads(exc.serialize_as_json())
    assert exc.get_http_status_code() == 400 and "\n" not in body["message"] and "stack_trace" not in body
    for part in parts:
        assert part in body["message"]


def test_decompression_bomb_is_a_400_sentence(upscaler: ESRGANUpscaler) -> None:
    with pytest.raises(BadRequest) as err:
        predict(upscaler, b64(header_only_png(30000, 30000)))
    assert_one_sentence(err.value, "row 0:", "decompression bomb", "server limit is 400")


def test_oversized_row_is_a_400_sentence(upscaler: ESRGANUpscaler) -> None:
    with pytest.raises(BadRequest) as err:
        predict(upscaler, png_b64(10, 10), b64(header_only_png(2000, 1000)))
    assert_one_sentence(err.value, "row 1: input 2000x1000 exceeds the server limit of 400 pixels")


def test_total_pixels_per_request_are_limited(upscaler: ESRGANUpscaler) -> None:
    assert len(predict(upscaler, png_b64(20, 15), png_b64(20, 15))) == 2  # 600 pixels: at the limit
    with pytest.raises(BadRequest) as err:
        predict(upscaler, *[png_b64(20, 15)] * 2, png_b64(1, 1))
    assert_one_sentence(err.value, "3 images hold 601 pixels, over the server limit of 600 per request")


def test_mlflow_prefix_with_the_request_is_dropped() -> None:
    exc = BadRequest("row 0: 'image' is not valid base64")
    exc.message = f"Failed to predict data '{'x' * 1000}'. \nError: {exc.message}"  # what the scoring server does
    assert json.loads(exc.serialize_as_json())["message"] == "row 0: 'image' is not valid base64"


def test_request_limit_defaults_to_the_row_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = str(tmp_path / "g.safetensors")
    ctx = SimpleNamespace(model_config={"max_input_pixels": 1234}, artifacts={"generator": gen})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        save_generator(RRDBNet(num_feat=8, num_block=1, num_grow=4), ctx.artifacts["generator"])
    monkeypatch.delenv("ESRGAN_MAX_INPUT_PIXELS", raising=False)
    monkeypatch.delenv("ESRGAN_MAX_REQUEST_PIXELS", raising=False)
    model = ESRGANUpscaler()
    model.load_context(ctx)  # type: ignore[arg-type]
    assert (model.max_pixels, model.max_request_pixels) == (1234, 1234)
    monkeypatch.setenv("ESRGAN_MAX_REQUEST_PIXELS", "5000")
    model.load_context(ctx)  # type: ignore[arg-type]
    assert model.max_request_pixels == 5000


@pytest.mark.slow
def test_real_server_answers_a_bomb_with_one_sentence(tmp_path: Path) -> None:
    from tests.e2e.servers import model_server, post_invocations

    model_dir = save_served_model(tmp_path, max_input_pixels=1_000_000)

    def post(url: str, images: list[str]) -> tuple[int, dict[str, Any]]:
        return post_invocations(url, {"dataframe_split": {"columns": ["image"], "data": [[im] for im in images]}})

    with model_server(str(model_dir), tmp_path, f"sqlite:///{tmp_path / 'unused.db'}") as url:
        status, body = post(url, [b64(header_only_png(30000, 30000))])
        assert status == 400 and set(body) <= {"error_code", "message", "sqlstate", "error_class"}
        assert body["message"] == (
            f"row 0: 'image' declares over {2 * Image.MAX_IMAGE_PIXELS} pixels (a decompression bomb), "
            "the server limit is 1000000"
        )
        status, body = post(url, [png_b64(600, 1000), png_b64(600, 1000)])  # 1.2 MP in all
        assert status == 400 and body["message"].startswith("the request's 2 images hold 1200000 pixels")
        status, body = post(url, [png_b64(6, 5)])
        assert status == 200 and (body["predictions"][0]["width"], body["predictions"][0]["height"]) == (20, 24)
        # Issue 21: a 5 MB malformed body is not echoed back (MLflow's own 400 quoted it whole).
        req = urllib.request.Request(
            f"{url}/invocations",
            data=b'{"dataframe_split": ' + b"x" * 5_000_000,
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=120)
        answer = err.value.read()
        assert err.value.code == 400 and len(answer) < 500
        assert json.loads(answer)["message"].startswith("the request body is not valid JSON")


# --- issue 21, case 13: the server never echoes the request ------------------------------------


def asgi_post(app: Any, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    """POST ``body`` to ``/invocations`` of an ASGI app, in process; the status and the response body."""
    import asyncio

    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/invocations",
        "raw_path": b"/invocations",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def save_served_model(tmp_path: Path, max_input_pixels: int = 10_000) -> Path:
    import mlflow

    from pipeline.registry.packaging import ESRGAN_PACKAGE, PYFUNC_CODE, _signature

    gen = tmp_path / "generator.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        save_generator(RRDBNet(num_feat=8, num_block=1, num_grow=4), gen)
    model_dir = tmp_path / "model"
    mlflow.pyfunc.save_model(
        str(model_dir),
        python_model=str(PYFUNC_CODE),
        artifacts={"generator": str(gen)},
        code_paths=[str(ESRGAN_PACKAGE)],
        model_config={"max_input_pixels": max_input_pixels, "tile": 64},
        signature=_signature(),
    )
    return model_dir


#: Bodies that MLflow's own scoring server used to quote whole in its 400 (5 MB each).
BIG = 5_000_000
ECHOING_BODIES = {
    "malformed JSON": (b'{"dataframe_split": ' + b"x" * BIG, "the request body is not valid JSON (Expecting value"),
    "not UTF-8": (b'{"a": "' + b"\xff" * BIG + b'"}', "the request body is not UTF-8 (invalid start byte at byte 7)"),
    "wrong column": (
        json.dumps({"dataframe_split": {"columns": ["c" * BIG], "data": [["x"]]}}).encode(),
        "Model is missing inputs ['image']",
    ),
}


def test_the_scoring_server_never_echoes_the_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.pyfunc import scoring_server

    # As `mlflow models serve` does: the server module first, then the model's code (which guards it).
    monkeypatch.setattr(
        scoring_server,
        "invocations",
        getattr(scoring_server.invocations, "__wrapped__", None) or scoring_server.invocations,
    )
    monkeypatch.setenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "false")  # init() sets it; restored afterwards
    model = mlflow.pyfunc.load_model(str(save_served_model(tmp_path)))
    assert getattr(scoring_server.invocations, "_esrgan_guarded", False), "loading the model did not guard the server"
    app = scoring_server.init(model)

    for case, (body, reason) in ECHOING_BODIES.items():
        status, answer = asgi_post(app, body)
        assert status == 400, case
        assert len(answer) < 500, f"{case}: a {len(answer)}-byte answer"
        message = json.loads(answer)["message"]
        assert reason in message and "\n" not in message and "stack_trace" not in json.loads(answer), case
    status, answer = asgi_post(app, b"x" * 1000, content_type="text/" + "y" * 10_000)
    assert status == 415 and len(answer) < 500
    status, answer = asgi_post(
        app, json.dumps({"dataframe_split": {"columns": ["image"], "data": [[png_b64(6, 5)]]}}).encode()
    )
    assert status == 200 and json.loads(answer)["predictions"][0]["width"] == 20
