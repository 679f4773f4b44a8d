"""The project image and a podman Docker-API socket for container tests (podman, no Docker daemon).

The image is built once per test session with ``./run image`` (which reuses an existing image whose
``esrgan.inputs`` label matches the current Dockerfile and sources), so a second session costs seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.processes import stop_process_group
from tests.e2e.project import REPO

#: The image user (Dockerfile ``USER 10001``): folders a container writes to must be theirs.
IMAGE_UID = 10001


#: ``0`` skips the container tests (a cold image build takes ~10 minutes on 2 cores); also
#: ``pytest -m "not containers"``.
OPT_OUT_ENV = "ESRGAN_CONTAINER_TESTS"
#: ``1`` (set by ``.ci/run`` once podman answers): a missing podman fails instead of skipping.
REQUIRE_ENV = "ESRGAN_REQUIRE_CONTAINERS"


def podman() -> str:
    """The podman binary, or a skip naming the reason (a failure where CI set podman up)."""
    if os.environ.get(OPT_OUT_ENV) == "0":
        pytest.skip(f"container tests switched off ({OPT_OUT_ENV}=0)")
    found = shutil.which("podman")
    if found is None:
        reason = "podman not installed (apt-get install podman runc debootstrap; as root, .ci/run does this)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    return found


@dataclass(frozen=True)
class BuiltImages:
    """What ``./run image`` built: ``variant -> image name`` (the cpu variant needs PyTorch's CPU index)."""

    names: dict[str, str]
    build_seconds: float

    def for_variant(self, variant: str) -> str:
        """The image for ``variant``, the cuda one standing in where the cpu one could not be built."""
        return self.names.get(variant) or self.names["cuda"]


def build_images(timeout: float = 2400) -> BuiltImages:
    """``./run image``: both variants where possible; fails the session's container tests if none builds."""
    podman()
    start = time.monotonic()
    result = subprocess.run(
        ["./run", "image", "cpu", "cuda"], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"./run image failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    names = {}
    for line in result.stdout.splitlines():  # "<name>\t<size>" per image (the build log goes to stderr)
        if "\t" in line:
            name = line.split("\t")[0]
            names[name.rsplit("-", 1)[-1]] = name
    assert "cuda" in names, result.stdout + result.stderr[-3000:]
    return BuiltImages(names=names, build_seconds=time.monotonic() - start)


@contextlib.contextmanager
def podman_socket(folder: Path, timeout: float = 60) -> Iterator[str]:
    """``podman system service`` on a unix socket in ``folder``; yields its ``DOCKER_HOST`` URL.

    Stopped by its process group id on exit (its containers are removed by their runners).
    """
    import docker

    sock = folder / "podman.sock"
    url = f"unix://{sock}"
    log = folder / "podman-service.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [podman(), "system", "service", "--time=0", url],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"podman system service exited with {proc.returncode}: {log.read_text()[-2000:]}")
            if sock.exists():
                client = docker.DockerClient(base_url=url)
                try:
                    if client.ping():
                        break
                except docker.errors.DockerException:
                    pass
                finally:
                    client.close()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        stop_process_group(proc)


def writable_by_image(path: Path) -> Path:
    """Create ``path`` owned by the image user (rootful podman maps uid 10001 to itself)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, IMAGE_UID, IMAGE_UID)
    else:
        path.chmod(0o777)
    return path
