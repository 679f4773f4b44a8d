"""End to end in containers: the image ``./run image`` builds from the Dockerfile, under podman.

1. Smoke test of the image's own entry points, as its non-root user on a read-only root file system.
2. The whole KFP pipeline (tiny configuration) with ``kfp.local.DockerRunner`` through podman's
   Docker API: every task in a container of the built image, MLflow a real server on the loopback
   address (the containers share the host network), the champion in its registry.

Skipped where podman is not installed; ``.ci/run`` installs it, so these run in CI (deselect with
``-m "not containers"``: the first build of the image takes ~10 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.e2e.containers import IMAGE_UID, BuiltImages, build_images, podman, podman_socket, writable_by_image
from tests.e2e.project import FAST_KFP_OVERRIDES, REPO, run, tiny_params
from tests.e2e.servers import mlflow_server

pytestmark = [pytest.mark.slow, pytest.mark.containers]


@pytest.fixture(scope="session")
def images() -> BuiltImages:
    built = build_images()
    print(f"\n./run image: {built.names} in {built.build_seconds:.0f}s")
    return built


def podman_run(image: str, *args: str, volumes: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``podman run`` as the image's user with a read-only root file system (a tmpfs for /tmp only)."""
    cmd = [podman(), "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--network", "none"]
    for volume in volumes:
        cmd += ["--volume", volume]
    return subprocess.run([*cmd, image, *args], capture_output=True, text=True, timeout=300)


# ---- 1. the image's entry points ----------------------------------------------------------------


def test_image_runs_esrgan_as_non_root_on_a_read_only_root(images: BuiltImages) -> None:
    image = images.for_variant("cpu")
    result = podman_run(image, "sh", "-c", "id -u; esrgan --help; touch /opt/venv/x 2>&1 || echo read-only")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(IMAGE_UID)
    assert "upscale" in result.stdout and "stage" in result.stdout
    assert lines[-1] == "read-only"  # the root file system really is read-only
    labels = subprocess.run(
        [podman(), "image", "inspect", "--format", "{{json .Labels}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(labels)["org.opencontainers.image.revision"] not in ("", "unknown")
    # The build-time pip settings (host wheel folders, indexes, pip.conf) stay out of the image: podman
    # 4.3 leaves their mount points behind, empty, and nothing else.
    leaked = podman_run(
        image,
        "sh",
        "-c",
        "env | grep ^PIP_; find /etc/pip.conf /etc/xdg/pip /opt/wheels /opt/pypi "
        "/opt/pypi-more -type f ! -empty 2>/dev/null; true",
    )
    assert leaked.stdout == "", leaked.stdout


def test_image_upscales_like_the_host(images: BuiltImages, tmp_path: Path) -> None:
    """``esrgan upscale`` in the container gives the host's pixels for the same small model and image."""
    import torch
    from PIL import Image

    from esrgan.models import RRDBNet, save_generator

    inputs = tmp_path / "in"
    inputs.mkdir()
    torch.manual_seed(0)
    save_generator(RRDBNet(num_feat=8, num_block=1, num_grow=4), inputs / "tiny.pth")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(inputs / "photo.png")
    out = writable_by_image(tmp_path / "out")

    result = podman_run(
        images.for_variant("cpu"),
        "esrgan",
        "upscale",
        "/in/photo.png",
        "--model",
        "/in/tiny.pth",
        "-o",
        "/out",
        "--device",
        "cpu",
        volumes=(f"{inputs}:/in:ro", f"{out}:/out"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    host = run(
        [
            "esrgan",
            "upscale",
            str(inputs / "photo.png"),
            "--model",
            str(inputs / "tiny.pth"),
            "-o",
            str(tmp_path / "host"),
            "--device",
            "cpu",
        ],
        tmp_path,
    )
    assert host.returncode == 0, host.stderr
    got = np.asarray(Image.open(out / "photo_x4.png"))
    want = np.asarray(Image.open(tmp_path / "host" / "photo_x4.png"))
    assert got.shape == want.shape == (48, 64, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # same code and torch; rounding at most


def test_image_rejects_a_bad_checkpoint_with_one_line(images: BuiltImages, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "bad.pth").write_bytes(b"not a checkpoint")
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(inputs / "a.png")
    out = writable_by_image(tmp_path / "out")
    result = podman_run(
        images.for_variant("cpu"),
        "esrgan",
        "upscale",
        "/in/a.png",
        "--model",
        "/in/bad.pth",
        "-o",
        "/out",
        volumes=(f"{inputs}:/in:ro", f"{out}:/out"),
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors and "bad.pth" in errors[-1], result.stderr
    assert list(out.iterdir()) == []


# ---- 2. the whole pipeline with kfp.local.DockerRunner --------------------------------------------


@pytest.fixture(scope="module")
def container_run(images: BuiltImages, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from kfp import compiler, local

    from esrgan.data import build_sample_dataset
    from pipeline.images import Images
    from pipeline.kfp.dag import build_pipeline
    from pipeline.kfp.run import build_arguments, load_params_doc, print_restored

    root = tmp_path_factory.mktemp("kfp-docker")
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    # DockerRunner mounts only the pipeline root (at the same path), so the data and the
    # checkpoints live below it; the containers run as uid 10001 and write there.
    pipeline_root = writable_by_image(root / "kfp")
    data = pipeline_root / "hr-data"
    build_sample_dataset(data)
    checkpoints = writable_by_image(pipeline_root / "checkpoints")

    variants = Images(cpu=images.for_variant("cpu"), cuda=images.for_variant("cuda"))
    pipeline = build_pipeline(variants, params_file)
    compiler.Compiler().compile(pipeline, str(root / "compiled.yaml"))
    args = build_arguments(
        pipeline.component_spec.inputs or {}, list(FAST_KFP_OVERRIDES), params_doc=load_params_doc(params_file)
    )
    args.update(data_source="local", data_uri=str(data), data_rev="", checkpoint_root=str(checkpoints))

    with mlflow_server(root / "mlflow") as url, podman_socket(root) as docker_host:
        old = os.environ.get("DOCKER_HOST")
        os.environ["DOCKER_HOST"] = docker_host  # kfp.local's docker.from_env()
        try:
            # Host networking: the containers reach the loopback MLflow server.
            runner = local.DockerRunner(network_mode="host", environment={"MLFLOW_TRACKING_URI": url})
            local.init(runner=runner, pipeline_root=str(pipeline_root), raise_on_error=True)
            start = time.monotonic()
            with print_restored():  # kfp.local would leave its indenting print behind
                task = pipeline(**args)
            seconds = time.monotonic() - start
        finally:
            if old is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = old
        print(f"\ncontainerised pipeline: {seconds:.0f}s")
        yield {
            "root": root,
            "url": url,
            "record": json.loads(task.output),
            "images": variants,
            "pipeline_root": pipeline_root,
            "seconds": seconds,
        }


def test_tasks_run_the_component_definitions_of_pipeline_yaml(container_run: dict[str, Any]) -> None:
    """Same commands as the committed package; only the image names differ (local vs ghcr.io)."""

    def executors(path: Path) -> dict[str, dict[str, Any]]:
        return next(yaml.safe_load_all(path.read_text()))["deploymentSpec"]["executors"]

    ran, committed = executors(container_run["root"] / "compiled.yaml"), executors(REPO / "pipeline.yaml")
    assert ran.keys() == committed.keys()
    images = container_run["images"]
    for name, spec in ran.items():
        container, reference = spec["container"], committed[name]["container"]
        assert (container["command"], container["args"]) == (reference["command"], reference["args"]), name
        variant = reference["image"].rsplit("-", 1)[-1]
        assert container["image"] == getattr(images, variant), name


def test_champion_is_in_the_registry_with_alias_and_metrics(container_run: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    record = container_run["record"]
    client = MlflowClient(tracking_uri=container_run["url"])
    version = client.get_model_version_by_alias("esrgan-x4", "champion")
    assert str(version.version) == str(record["version"]) and record["alias"] == "champion"
    assert record["alpha"] == 0.5 and float(version.tags["alpha"]) == 0.5
    assert float(version.tags["psnr_y"]) == pytest.approx(record["metrics"]["psnr_y"], abs=1e-4)
    assert 5 < record["metrics"]["psnr_y"] < 60
    assert version.run_id == record["register_run_id"]
    champion_run = client.get_run(version.run_id)
    assert champion_run.data.metrics  # the register run logged the champion's metrics


def test_every_stage_ran_in_a_container_of_the_image(container_run: dict[str, Any]) -> None:
    """The stage runs record the image variant (an ENV of the image) and the image's user."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=container_run["url"])
    runs = client.search_runs([client.get_experiment_by_name("esrgan").experiment_id], max_results=100)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED" and parent.info.run_id == container_run["record"]["pipeline_run_id"]
    stages = {r.data.tags["esrgan.stage"]: r for r in runs if r is not parent}
    assert sorted(r.data.tags["esrgan.stage"] for r in runs if r is not parent) == (
        ["evaluate"] * 3 + ["extract_patches", "finetune_gan", "pretrain_psnr", "register"]
    )
    images = container_run["images"]
    for stage, run_ in stages.items():
        want = "cuda" if stage in ("pretrain_psnr", "finetune_gan") else images.cpu.rsplit("-", 1)[-1]
        assert run_.data.tags.get("image.variant") == want, stage
        assert run_.data.tags["mlflow.user"] == "esrgan", stage  # the image's user, not the host's
        assert run_.data.tags["git.commit"] not in ("", "unknown"), stage  # from the image's ESRGAN_GIT_COMMIT


def test_generators_reports_and_plot_exist(container_run: dict[str, Any]) -> None:
    import torch

    from esrgan.models import load_generator

    root = container_run["pipeline_root"]
    generators = sorted(root.glob("*/for-loop-*/interpolate/model/generator.pth"))  # one per ParallelFor item
    assert len(generators) == 3
    for path in [*generators, *root.glob("*/pretrain-psnr/model/generator.pth")]:
        model = load_generator(path)
        assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    reports = sorted(root.glob("*/for-loop-*/evaluate/report"))
    assert len(reports) == 3
    alphas = sorted(json.loads(p.read_text())["alpha"] for p in reports)
    assert alphas == [0.0, 0.5, 1.0]
    (plot,) = root.glob("*/register/plot")
    assert "data:image/png;base64," in plot.read_text()
    (key,) = [p.name for p in (root / "checkpoints").iterdir()]
    assert {p.name for p in (root / "checkpoints" / key).iterdir()} == {"pretrain_psnr", "finetune_gan"}
