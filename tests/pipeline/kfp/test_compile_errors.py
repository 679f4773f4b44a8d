"""``esrgan kfp submit`` and ``esrgan kfp compile`` fail in one ``esrgan: error:`` line (issue 21, cases 8 and 11).

Submit: a refused port, an unresolvable name, a server that answers 404 (or not as KFP, or with
a redirect, or refuses the token, or never answers) are each reported within seconds, naming the
host without its credentials. Real loopback sockets and ``http.server`` threads, no mocks.

Compile: an image repository or tag that is not a valid OCI/Docker reference is refused before
anything is written; an existing ``pipeline.yaml`` is left as it was, and the write is atomic.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.images import DEFAULT_REPOSITORY, REPOSITORY_RE, TAG_RE, image_problems
from tests.loopback import serving

REPO = Path(__file__).resolve().parents[3]
PACKAGE = REPO / "pipeline.yaml"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], float]:
    start = time.monotonic()
    code = main(argv)
    elapsed = time.monotonic() - start
    return code, capsys.readouterr().err.splitlines(), elapsed


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- submit -------------------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder and HOME (kfp keeps a context file there), without KFP_TOKEN."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    return tmp_path


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], str]]:
    """``serve(handler)`` starts a loopback HTTP server answering every request with ``handler``; returns its URL."""
    with contextlib.ExitStack() as servers:

        def start(handle: Handler) -> str:
            class H(http.server.BaseHTTPRequestHandler):
                def do_GET(self) -> None:
                    handle(self)

                do_POST = do_GET

                def log_message(self, *args: object) -> None:
                    pass

            return servers.enter_context(serving(H))

        yield start


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    def handle(req: http.server.BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        req.rfile.read(length)
        req.send_response(status)
        for name, value in (headers or {}).items():
            req.send_header(name, value)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    return handle


def submit_fails(host: str, capsys: pytest.CaptureFixture[str], workdir: Path, *extra: str) -> str:
    """Run ``esrgan kfp submit --host HOST``; assert exit 2, one error line, fast, nothing written; return the line."""
    code, err, elapsed = run_cli(["kfp", "submit", "--host", host, "--package", str(PACKAGE), *extra], capsys)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("esrgan: error: "), err
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert files_under(workdir) == {}
    return err[0]


def test_submit_to_a_refused_port_is_one_line(
    refused_port: int, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = submit_fails(f"http://127.0.0.1:{refused_port}", capsys, workdir)
    assert f"KFP host http://127.0.0.1:{refused_port} is unreachable (connection refused" in line


def test_submit_to_an_unresolvable_host_is_one_line(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = submit_fails("http://no-such-host.invalid", capsys, workdir)
    assert "KFP host http://no-such-host.invalid is unreachable (its host name does not resolve" in line


def test_submit_to_a_server_answering_404_is_one_line(
    serve: Callable[[Handler], str], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = serve(answer(404, b"not here"))
    line = submit_fails(host, capsys, workdir)
    assert f"KFP host {host} is not a Kubeflow Pipelines API" in line
    assert "/apis/v2beta1/healthz answered HTTP 404" in line


def test_submit_to_a_web_page_that_is_not_kfp_is_one_line(
    serve: Callable[[Handler], str], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = serve(answer(200, b"<html>hello</html>", {"Content-Type": "text/html"}))
    assert "is not a Kubeflow Pipelines API" in submit_fails(host + "/", capsys, workdir)


def test_submit_to_a_login_redirect_names_it_without_its_query(
    serve: Callable[[Handler], str], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = serve(answer(302, headers={"Location": "http://127.0.0.1/dex/auth?state=SECRETSTATE"}))
    line = submit_fails(host, capsys, workdir)
    assert "redirects GET /apis/v2beta1/healthz to http://127.0.0.1/dex/auth (a login page?)" in line
    assert "SECRETSTATE" not in line


def test_submit_with_a_refused_token_says_so_without_the_token(
    serve: Callable[[Handler], str], workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str | None] = []

    def handle(req: http.server.BaseHTTPRequestHandler) -> None:
        seen.append(req.headers.get("Authorization"))
        answer(401)(req)

    host = serve(handle)
    assert "it needs a bearer token in KFP_TOKEN" in submit_fails(host, capsys, workdir)
    monkeypatch.setenv("KFP_TOKEN", "tok-very-secret")
    line = submit_fails(host, capsys, workdir)
    assert "refused access (GET /apis/v2beta1/healthz answered HTTP 401 Unauthorized)" in line
    assert "the token in KFP_TOKEN was refused" in line and "tok-very-secret" not in line
    assert seen == [None, "Bearer tok-very-secret"]


def test_submit_to_a_silent_server_gives_up_after_the_probe_timeout(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pipeline.kfp.run.PROBE_TIMEOUT_S", 0.5)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # accepts (backlog), never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        line = submit_fails(f"http://127.0.0.1:{sock.getsockname()[1]}", capsys, workdir)
    assert "is unreachable (no answer within 0.5 s" in line


def test_submit_hides_the_credentials_of_the_host_url(
    refused_port: int, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = submit_fails(f"http://alice:pa55word@127.0.0.1:{refused_port}/x?token=qs-secret", capsys, workdir)
    assert f"http://***@127.0.0.1:{refused_port}/x is unreachable" in line
    assert "alice" not in line and "pa55word" not in line and "qs-secret" not in line


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("", "--host is empty"),
        ("http://[bad", "not a valid URL"),
        ("http://bob:hunter22@127.0.0.1:99999", "--host http://***@127.0.0.1:99999: not a valid URL"),
    ],
)
def test_submit_to_a_host_that_is_not_a_url_is_one_line(
    host: str, expected: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = submit_fails(host, capsys, workdir)
    assert expected in line and "hunter22" not in line


def test_submit_reports_the_api_refusing_the_run_in_one_line(
    serve: Callable[[Handler], str], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Past the probe, kfp.Client's ApiException: status and the API's message, one line."""
    refusal = json.dumps({"error": "x", "code": 3, "message": "Invalid input error:\nno such\tthing"}).encode()

    def handle(req: http.server.BaseHTTPRequestHandler) -> None:
        if req.path.startswith("/apis/v2beta1/healthz"):
            answer(200, json.dumps({"multi_user": False}).encode(), {"Content-Type": "application/json"})(req)
        else:
            answer(400, refusal, {"Content-Type": "application/json"})(req)

    host = serve(handle)
    line = submit_fails(host, capsys, workdir)
    assert line == (
        f"esrgan: error: KFP host {host} did not create the run: HTTP 400 Bad Request: Invalid input error: no such thing"
    )


def test_submit_checks_its_package_before_the_network(
    refused_port: int, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, _ = run_cli(
        ["kfp", "submit", "--host", f"http://127.0.0.1:{refused_port}", "--package", "missing.yaml"], capsys
    )
    assert code == 2 and len(err) == 1 and "missing.yaml" in err[0] and "unreachable" not in err[0]


# --- compile ------------------------------------------------------------------------------------

BAD_REPOSITORIES = {
    "bad image name": "is not a valid image repository",
    "": "--image-repository is empty",
    "ghcr.io/Me/esrgan": "repository paths are lowercase (ghcr.io/me/esrgan)",
    "ghcr.io/me/esrgan:1.0": "without a tag or digest",
    "ghcr.io/me/esrgan@sha256:abc": "without a tag or digest",
    "a//b": "is not a valid image repository",
    "/a": "is not a valid image repository",
    "a/": "is not a valid image repository",
    "a___b": "is not a valid image repository",
    "-a": "is not a valid image repository",
    "localhost:5000": "without a tag or digest",
    "line\nbreak": "is not a valid image repository",
    "a" * 300: "longer than 255 characters",
}
BAD_TAGS = {
    "bad tag": "is not a valid image tag",
    "": "--image-tag is empty",
    "-dev": "not starting with '.' or '-'",
    ".dev": "not starting with '.' or '-'",
    "1.0+local": "is not a valid image tag",
    "x" * 124: "longer than 123 characters",
}


@pytest.fixture
def existing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "pipeline.yaml"
    out.write_text("# the previous package\n")
    os.utime(out, (1_000_000_000, 1_000_000_000))
    return out


def compile_fails(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    before = files_under(out.parent)
    mtime = out.stat().st_mtime
    code, err, _ = run_cli(["kfp", "compile", "--params", str(REPO / "params.yaml"), "-o", str(out), *argv], capsys)
    assert code == 2, err
    assert err and all(line.startswith("esrgan: error: ") for line in err), err
    assert files_under(out.parent) == before and out.stat().st_mtime == mtime
    return err


@pytest.mark.parametrize("repository", list(BAD_REPOSITORIES))
def test_compile_refuses_an_invalid_image_repository(
    repository: str, existing_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = compile_fails([f"--image-repository={repository}"], existing_package, capsys)
    assert len(err) == 1 and BAD_REPOSITORIES[repository] in err[0], err


@pytest.mark.parametrize("tag", list(BAD_TAGS))
def test_compile_refuses_an_invalid_image_tag(
    tag: str, existing_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = compile_fails([f"--image-tag={tag}"], existing_package, capsys)
    assert len(err) == 1 and BAD_TAGS[tag] in err[0], err


def test_compile_reports_a_bad_repository_and_a_bad_tag_on_two_lines(
    existing_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = compile_fails(["--image-repository", "Bad Name", "--image-tag", "bad tag"], existing_package, capsys)
    assert [line.split(" ", 3)[2] for line in err] == ["--image-repository", "--image-tag"]


@pytest.mark.parametrize("name", ["pipeline.json", "pipeline.txt", "folder.yaml"])
def test_compile_refuses_an_output_it_cannot_write(
    name: str, existing_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (existing_package.parent / "folder.yaml").mkdir()
    err = compile_fails(["-o", str(existing_package.parent / name)], existing_package, capsys)
    assert len(err) == 1 and name in err[0]


def test_compile_failing_midway_leaves_the_old_package(
    existing_package: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The package is staged elsewhere: a compiler that dies after writing half a file changes nothing."""
    from kfp import compiler

    def half_then_crash(self: object, pipeline_func: object, package_path: str, **kwargs: object) -> None:
        Path(package_path).write_text("# half a pack")
        raise RuntimeError("compiler crashed")

    monkeypatch.setattr(compiler.Compiler, "compile", half_then_crash)
    before = files_under(existing_package.parent)
    with pytest.raises(RuntimeError, match="compiler crashed"):
        main(["kfp", "compile", "--params", str(REPO / "params.yaml"), "-o", str(existing_package)])
    assert files_under(existing_package.parent) == before


# --- the reference grammar ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "repository",
    [
        "ghcr.io/owner/esrgan-pipeline",
        "registry.local/esrgan",
        "localhost/esrgan-pipeline",
        "localhost:5000/a/b",
        "Registry.Example.COM:443/team/x",
        "[::1]:5000/x",
        "esrgan",
        "a__b/c.d/e---f/g_h",
        DEFAULT_REPOSITORY,  # the documented placeholder (ghcr.io/owner/...) is a valid reference too
    ],
)
def test_valid_repositories_pass(repository: str) -> None:
    assert image_problems(repository, "v1.2.3_rc-1") == []
    assert image_problems(repository, None) == []
    assert image_problems(repository, "x" * 123) == []


@settings(max_examples=40, deadline=None)
@given(
    st.from_regex(REPOSITORY_RE, fullmatch=True).filter(lambda s: len(s) <= 255), st.from_regex(TAG_RE, fullmatch=True)
)
def test_whatever_the_grammar_generates_passes(repository: str, tag: str) -> None:
    assert image_problems(repository, tag[:123]) == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.one_of(st.none(), st.text(max_size=200)))
def test_any_text_gives_one_line_problems_quickly(repository: str, tag: str | None) -> None:
    start = time.monotonic()
    problems = image_problems(repository, tag)
    assert time.monotonic() - start < 0.5
    assert all(len(p.splitlines()) == 1 for p in problems)
    valid_repo = len(repository) <= 255 and REPOSITORY_RE.fullmatch(repository)
    valid_tag = tag is None or (len(tag) <= 123 and TAG_RE.fullmatch(tag))
    assert (problems == []) == bool(valid_repo and valid_tag)


def test_the_repository_regex_does_not_backtrack_exponentially() -> None:
    for evil in ["a" * 250 + "!", "a-" * 120 + "!", "a." * 100 + "A/!", "a" + "-" * 250 + "!", "a1" * 127 + "A"]:
        start = time.monotonic()
        assert REPOSITORY_RE.fullmatch(evil) is None
        assert time.monotonic() - start < 0.1
