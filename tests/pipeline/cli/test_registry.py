"""Issue 21, cases 6 and 7: every way a ``models:/`` / ``runs:/`` load or a registry command can meet
a bad tracking server or a bad URI ends in one ``esrgan: error:`` line, exit status 2, within
seconds, with no password in it.

Servers here are real and local: a refused port, small ``http.server`` threads (a 404 page, an
HTML page, a server behind basic auth that answers MLflow's JSON), a listening socket that never
answers, and MLflow's own SQLite registry in a temporary folder."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.errors import TrackingUnavailable
from pipeline.registry.tracking import adopt_uri_credentials, check_reachable
from tests.loopback import serving

PASSWORD = "s3cret-Pa55"
USERINFO = f"user:{PASSWORD}"
REFUSED = f"http://{USERINFO}@127.0.0.1:9"
#: A coarse guard only: MLflow's own retries took ~250 s; the probe gives up within seconds.
FAST_S = 30
MLFLOW_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)


@pytest.fixture(autouse=True)
def clean_mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts without MLflow settings, and what the command set (URIs, credentials moved
    out of a URI, retry limits) is undone afterwards."""
    for name in MLFLOW_ENV:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    yield
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


Responder = Callable[[http.server.BaseHTTPRequestHandler], tuple[int, str, str]]


@contextlib.contextmanager
def http_stub(respond: Responder) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A loopback HTTP server answering every request with ``respond(handler)`` -> (status,
    content type, body); yields its URL and the list of requests seen (path and headers)."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            status, ctype, body = respond(self)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        yield url, seen


def not_found(_: http.server.BaseHTTPRequestHandler) -> tuple[int, str, str]:
    return 404, "text/html", "<html><body>404 page of some other web server</body></html>"


def html_page(_: http.server.BaseHTTPRequestHandler) -> tuple[int, str, str]:
    return 200, "text/html", "<html><body>please log in</body></html>"


def mlflow_behind_basic_auth(handler: http.server.BaseHTTPRequestHandler) -> tuple[int, str, str]:
    """401 without ``user:PASSWORD``; else MLflow's answer to a registry with no versions."""
    if handler.headers.get("Authorization") != "Basic " + base64.b64encode(USERINFO.encode()).decode():
        return 401, "text/plain", "You are not authenticated."
    if "registered-models/get" in handler.path or "registered-models/alias" in handler.path:
        body = {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Registered Model with name=esrgan-x4 not found"}
        return 404, "application/json", json.dumps(body)
    return 200, "application/json", "{}"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("in") / "in.png"
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(path)
    return path


def commands(image: Path, out: Path, model: str = "models:/esrgan-x4@champion") -> dict[str, list[str]]:
    """Every command that talks to the tracking server or loads a ``models:/`` URI."""
    return {
        "upscale": ["upscale", str(image), "-o", str(out / "up"), "-m", model],
        "evaluate": ["evaluate", "-m", model, "--data", str(image.parent)],
        "export": ["export", "onnx", model, "-o", str(out / "x.onnx")],
        "promote": ["registry", "promote", "1"],
        "list": ["registry", "list"],
        "rollback": ["registry", "rollback"],
        "deploy": ["deploy", "kserve", "--model", "models:/esrgan-x4@champion"],
    }


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str, float]:
    """``esrgan argv`` in this process: exit status, stderr lines, stdout, seconds."""
    capsys.readouterr()
    start = time.monotonic()
    code = main(argv)
    seconds = time.monotonic() - start
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), captured.out, seconds


def one_error_line(code: int, lines: list[str], out: str) -> str:
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("esrgan: error: "), lines
    assert PASSWORD not in lines[0] and PASSWORD not in out
    return lines[0]


@pytest.mark.parametrize("command", ["upscale", "evaluate", "export", "promote", "list", "rollback", "deploy"])
def test_an_unreachable_server_is_one_line_in_seconds_without_the_password(
    command: str, image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", REFUSED)
    code, lines, out, seconds = run_cli(commands(image, tmp_path)[command], capsys)
    line = one_error_line(code, lines, out)
    assert line.startswith("esrgan: error: MLflow tracking server http://***@127.0.0.1:9 is unreachable ("), line
    assert seconds < FAST_S
    assert not (tmp_path / "up").exists() and not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("command", ["upscale", "promote", "deploy"])
def test_a_server_that_answers_404_is_not_taken_for_mlflow(
    command: str, image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with http_stub(not_found) as (url, _):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url.replace("http://", f"http://{USERINFO}@"))
        code, lines, out, seconds = run_cli(commands(image, tmp_path)[command], capsys)
    line = one_error_line(code, lines, out)
    assert "answered 404 Not Found for the MLflow API" in line and "http://***@127.0.0.1:" in line
    assert seconds < FAST_S


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real MLflow registry (SQLite) holding ``esrgan-x4`` with no version and no alias."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).create_registered_model("esrgan-x4")
    return uri


@pytest.mark.parametrize(
    ("command", "model", "problem"),
    [
        ("upscale", "models:/nope@champion", "Registered Model with name=nope not found"),
        ("upscale", "models:/esrgan-x4/99", "Model Version (name=esrgan-x4, version=99) not found"),
        ("upscale", "models:/esrgan-x4@champion", "alias champion not found"),
        ("upscale", "runs:/0123456789abcdef0123456789abcdef/model", "Run with id=0123456789abcdef"),
        ("evaluate", "models:/esrgan-x4/99", "Model Version (name=esrgan-x4, version=99) not found"),
        ("export", "models:/nope@champion", "Registered Model with name=nope not found"),
    ],
)
def test_an_unknown_model_alias_version_or_run_is_one_line_naming_the_uri(
    command: str,
    model: str,
    problem: str,
    registry: str,
    image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry)
    code, lines, out, _ = run_cli(commands(image, tmp_path, model)[command], capsys)
    line = one_error_line(code, lines, out)
    assert line.startswith(f"esrgan: error: {model}: ") and problem in line, line


def test_a_live_server_behind_basic_auth_in_the_uri_is_reached_and_the_password_never_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with http_stub(mlflow_behind_basic_auth) as (url, seen):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url.replace("http://", f"http://{USERINFO}@"))
        code, lines, out, _ = run_cli(["registry", "promote", "1"], capsys)
    # Reached (not "unreachable"), MLflow's own answer comes back as one line, and every request,
    # the probe's and MLflow's, carried the credentials as basic auth rather than in the URL.
    line = one_error_line(code, lines, out)
    assert "unreachable" not in line and "Registered Model with name=esrgan-x4 not found" in line, line
    assert seen and all(r["authorization"].startswith("Basic ") for r in seen)
    assert seen[0]["path"].startswith("/api/2.0/mlflow/registered-models/search")
    assert len(seen) > 1  # MLflow's calls followed the probe


def test_a_login_page_in_front_of_the_server_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with http_stub(html_page) as (url, _):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        code, lines, out, _ = run_cli(["registry", "list"], capsys)
    assert "with a page that is not JSON (text/html)" in one_error_line(code, lines, out)


def test_the_probe_counts_an_auth_refusal_as_reachable() -> None:
    with http_stub(mlflow_behind_basic_auth) as (url, seen):
        check_reachable(url)  # 401: someone is there; the real call reports the refusal
        check_reachable(url.replace("http://", f"http://{USERINFO}@"))
    assert "authorization" not in seen[0]
    assert seen[1]["authorization"] == "Basic " + base64.b64encode(USERINFO.encode()).decode()


def test_credentials_in_the_environment_win_over_the_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "user")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    with http_stub(mlflow_behind_basic_auth) as (url, seen):
        check_reachable(url.replace("http://", "http://someone:wrong@"))
    assert seen[0]["authorization"] == "Basic " + base64.b64encode(USERINFO.encode()).decode()


def test_a_server_that_never_answers_is_given_up_on_after_the_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        uri = f"http://{USERINFO}@127.0.0.1:{listener.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(TrackingUnavailable) as info:
            check_reachable(uri, timeout=0.5)
    assert time.monotonic() - start < FAST_S
    (line,) = info.value.problems
    assert "is unreachable (no answer within 0.5 s;" in line and PASSWORD not in line


def test_credentials_move_out_of_the_uri_into_mlflows_variables() -> None:
    import os

    assert adopt_uri_credentials("http://us%40er:p%3Ass@host:5000/prefix") == "http://host:5000/prefix"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("us@er", "p:ss")
    assert adopt_uri_credentials("sqlite:///x.db") == "sqlite:///x.db"
