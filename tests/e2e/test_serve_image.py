"""The torch-free serving image (``Dockerfile.serve``, ``./run image serve``) serves a registered version
over real HTTP, with the answers of the PyTorch server within the engines' fidelity bound.

The version is the shared demo's GAN generator (``demo_training``: trained once per session),
logged and registered as the register step does, then downloaded the way KServe's storage
initializer fetches a ``storageUri``, and mounted at ``/mnt/models`` (read-only, as the image's
non-root user, on a read-only root file system). The reference is ``mlflow models serve`` of the
same files on the host with ``ESRGAN_ENGINE=torch ESRGAN_PRECISION=fp32``: the server before issue 23.

Skipped where podman is not installed (``.ci/run`` installs it); the image builds in ~2 minutes
(no torch layer), and ``./run image`` reuses it while its inputs are unchanged.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipeline.processes import free_port, server_process
from tests.demo_training import DemoTraining
from tests.e2e.containers import podman
from tests.e2e.project import REPO
from tests.e2e.servers import model_server, post_invocations

pytestmark = [pytest.mark.slow, pytest.mark.containers]

#: The engines' fidelity bound against PyTorch fp32 (issue 23): PSNR and largest difference, 8-bit levels.
MIN_PSNR_DB = 50.0
MAX_LEVELS = 2


@pytest.fixture(scope="session")
def serve_image() -> str:
    """``./run image serve``: built once per session (and reused across sessions while its inputs match)."""
    podman()
    start = time.monotonic()
    result = subprocess.run(["./run", "image", "serve"], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"./run image serve failed:\n{result.stdout[-2000:]}\n{result.stderr[-5000:]}"
    (line,) = [line for line in result.stdout.splitlines() if "\t" in line]  # "<name>\t<size>"
    print(f"\n./run image serve: {line} in {time.monotonic() - start:.0f}s")
    return line.split("\t")[0]


@pytest.fixture(scope="module")
def model_dir(demo_training: DemoTraining, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo GAN generator registered as ``esrgan-x4`` version 1 and downloaded like a storageUri."""
    import mlflow

    from pipeline.registry.packaging import log_generator_model

    root = tmp_path_factory.mktemp("serve-registry")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("serve-image", (root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = log_generator_model(demo_training.gan_model, registered_model_name="esrgan-x4")
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/esrgan-x4/{info.registered_model_version}", dst_path=str(root / "model")
        )
    finally:
        mlflow.set_tracking_uri(previous)
    path = Path(local)
    assert (path / "MLmodel").is_file() and (path / "artifacts" / "model.onnx").is_file()
    for p in [path, *path.rglob("*")]:  # the image's user (uid 10001) reads the mount
        p.chmod(p.stat().st_mode | 0o755 if p.is_dir() else p.stat().st_mode | 0o644)
    return path


@pytest.fixture(scope="module")
def container(serve_image: str, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The image's own server (its CMD, on another port) on the host network; cold start measured."""
    port, name = free_port(), f"esrgan-serve-test-{os.getpid()}"
    cmd = [podman(), "run", "--rm", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp"]
    cmd += ["--volume", f"{model_dir}:/mnt/models:ro", serve_image]
    cmd += ["mlflow", "models", "serve", "-m", "/mnt/models", "--env-manager", "local"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("serve-container") / "serve.log"
    start = time.monotonic()
    try:
        with server_process(cmd, f"{url}/ping", log, timeout=300, grace=30):
            cold = time.monotonic() - start
            print(f"\nserving image: container start to the first 200 on /ping in {cold:.1f}s")
            yield {"url": url, "log": log, "image": serve_image}
    finally:
        subprocess.run([podman(), "rm", "--force", "--ignore", name], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def torch_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("serve-torch")
    tracking = f"sqlite:///{workdir / 'unused.db'}"
    with model_server(str(model_dir), workdir, tracking, ESRGAN_ENGINE="torch", ESRGAN_PRECISION="fp32") as url:
        yield url


def png_b64(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def requests(demo_training: DemoTraining) -> dict[str, np.ndarray]:
    """A crop of a validation photo in the layouts the server takes: RGB, RGBA, grey, 16-bit grey."""
    photo = sorted((demo_training.data / "val").rglob("*.png"))[0]
    rgb = np.asarray(Image.open(photo).convert("RGB"))[:48, :64].copy()
    alpha = np.linspace(0, 255, rgb.shape[0] * rgb.shape[1]).reshape(rgb.shape[:2]).astype(np.uint8)
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    return {
        "rgb": rgb,
        "rgba": np.dstack([rgb, alpha]),
        "grey": grey,
        "grey16": grey.astype(np.uint16) * 257 + np.arange(grey.size, dtype=np.uint16).reshape(grey.shape) % 257,
    }


def answer(url: str, image: np.ndarray) -> np.ndarray:
    status, body = post_invocations(url, {"dataframe_split": {"columns": ["image"], "data": [[png_b64(image)]]}})
    assert status == 200, body
    (row,) = body["predictions"]
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(row["image"]))))
    assert (row["height"], row["width"]) == out.shape[:2] == (4 * image.shape[0], 4 * image.shape[1])
    return out


def test_the_image_has_no_torch_and_is_small(container: dict[str, Any]) -> None:
    image = container["image"]
    result = subprocess.run(
        [
            podman(),
            "run",
            "--rm",
            "--network",
            "none",
            image,
            "python",
            "-c",
            "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('openvino') is not None); import os; print(os.getuid())",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "True", "10001"]
    size = int(
        subprocess.run(
            [podman(), "image", "inspect", "--format", "{{.Size}}", image], capture_output=True, text=True, check=True
        ).stdout
    )
    print(f"\nserving image: {size / 2**20:.0f} MiB")
    assert size < 1 << 30  # the torch image is 7.4 GB


def test_the_container_answers_as_the_torch_server(
    container: dict[str, Any], torch_server: str, demo_training: DemoTraining
) -> None:
    served_with = [line for line in container["log"].read_text().splitlines() if "serving with" in line]
    assert served_with and "torch" not in served_with[-1], served_with  # an ONNX engine, not a fallback
    for case, image in requests(demo_training).items():
        got, want = answer(container["url"], image), answer(torch_server, image)
        assert got.dtype == want.dtype and got.shape == want.shape, case
        levels = 257.0 if want.dtype == np.uint16 else 1.0  # 16-bit: in 8-bit grey levels
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64)) / levels
        psnr = 10 * np.log10(255.0**2 / max(float(np.mean(diff**2)), 1e-12))
        print(
            f"\n{case}: {served_with[-1].split('serving with ')[-1]} vs torch fp32: {psnr:.1f} dB, max {diff.max():.2f}"
        )
        assert psnr >= MIN_PSNR_DB and diff.max() <= MAX_LEVELS, (case, psnr, diff.max())


def test_the_container_refuses_bad_requests_with_one_sentence(container: dict[str, Any]) -> None:
    status, body = post_invocations(
        container["url"], {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(b"hello").decode()]]}}
    )
    assert status == 400 and body["message"] == "row 0: 'image' is not a readable image"
