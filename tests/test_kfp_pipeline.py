"""The compiled KFP pipeline: structure, cluster settings, images, and the committed pipeline.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from components.build import DEFAULT_REPOSITORY, Images, project_version
from pipeline.kfp_dag import MLFLOW_SECRET, MLFLOW_SECRET_ENV, S3_SECRET, S3_SECRET_ENV, compile_pipeline

REPO = Path(__file__).resolve().parents[1]
STEPS = ("resolve-params", "extract-patches", "pretrain-psnr", "finetune-gan", "interpolate", "evaluate", "register")
TRAINING = ("pretrain-psnr", "finetune-gan")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    return compile_pipeline(out, REPO / "params.yaml", Images.for_version())


@pytest.fixture(scope="module")
def spec(compiled: Path) -> dict[str, Any]:
    return next(yaml.safe_load_all(compiled.read_text()))


@pytest.fixture(scope="module")
def platform(compiled: Path) -> dict[str, Any]:
    docs = list(yaml.safe_load_all(compiled.read_text()))
    assert len(docs) == 2, "expected the pipeline spec and the kubernetes platform spec"
    return docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def tasks(spec: dict[str, Any]) -> dict[str, Any]:
    """Every task of the DAG, the loop body's included."""
    out = dict(spec["root"]["dag"]["tasks"])
    out.update(spec["components"]["comp-for-loop-1"]["dag"]["tasks"])
    return out


def test_every_step_is_a_component_and_a_task(spec: dict[str, Any]) -> None:
    assert {f"comp-{s}" for s in STEPS} | {"comp-for-loop-1"} == set(spec["components"])
    assert set(STEPS) == set(tasks(spec)) - {"for-loop-1"}
    loop = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert set(loop) == {"interpolate", "evaluate"}


def test_alpha_sweep_is_a_parallel_for_over_the_alphas_parameter(spec: dict[str, Any]) -> None:
    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--alphas"
    assert loop["inputs"]["parameters"]["pipelinechannel--alphas"] == {"componentInputParameter": "alphas"}
    assert loop["iteratorPolicy"]["parallelismLimit"] == 4
    default = spec["root"]["inputDefinitions"]["parameters"]["alphas"]["defaultValue"]
    assert default == yaml.safe_load((REPO / "params.yaml").read_text())["interpolate"]["alphas"]
    register = spec["root"]["dag"]["tasks"]["register"]["inputs"]["artifacts"]
    # dsl.Collected: the register task reads the loop's outputs, gathered into lists.
    assert register["models"]["taskOutputArtifact"]["producerTask"] == "for-loop-1"
    assert register["reports"]["taskOutputArtifact"]["producerTask"] == "for-loop-1"
    inputs = spec["components"]["comp-register"]["inputDefinitions"]["artifacts"]
    assert inputs["models"]["isArtifactList"] and inputs["reports"]["isArtifactList"]


def test_training_requests_a_gpu_cpu_and_memory(spec: dict[str, Any]) -> None:
    for name in TRAINING:
        res = spec["deploymentSpec"]["executors"][f"exec-{name}"]["container"]["resources"]
        assert res["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert res["accelerator"]["resourceCount"] == "1"
        assert (res["resourceCpuRequest"], res["resourceCpuLimit"]) == ("4", "8")
        assert (res["resourceMemoryRequest"], res["resourceMemoryLimit"]) == ("16G", "32G")
    for name in ("interpolate", "register", "resolve-params"):
        assert "accelerator" not in spec["deploymentSpec"]["executors"][f"exec-{name}"]["container"].get(
            "resources", {}
        )


def test_training_retries_with_backoff_and_resumes_from_a_volume(
    spec: dict[str, Any], platform: dict[str, Any]
) -> None:
    all_tasks = tasks(spec)
    for name in TRAINING:
        policy = all_tasks[name]["retryPolicy"]
        assert policy["maxRetryCount"] == 3 and policy["backoffDuration"] == "120s"
        assert policy["backoffFactor"] == 2.0
        (mount,) = platform[f"exec-{name}"]["pvcMount"]
        assert mount["mountPath"] == "/mnt/checkpoints"
        assert mount["pvcNameParameter"] == {"componentInputParameter": "checkpoint_pvc"}
    assert all("retryPolicy" not in all_tasks[n] for n in STEPS if n not in TRAINING)


def test_caching_only_on_cheap_deterministic_steps(spec: dict[str, Any]) -> None:
    cached = {n for n, t in tasks(spec).items() if t.get("cachingOptions", {}).get("enableCache")}
    assert cached == {"resolve-params", "extract-patches", "interpolate", "evaluate"}


def test_mlflow_and_s3_settings_come_from_secrets_only(spec: dict[str, Any], platform: dict[str, Any]) -> None:
    # Every task that talks to MLflow or S3; the parameter resolution and interpolation need neither.
    assert set(platform) - {"exec-resolve-params", "exec-interpolate"} == {f"exec-{n}" for n in STEPS} - {
        "exec-resolve-params",
        "exec-interpolate",
    }
    for name in set(STEPS) - {"interpolate", "resolve-params"}:
        pairs: set[tuple[str, str, str]] = set()
        for s in platform[f"exec-{name}"]["secretAsEnv"]:
            assert s["secretNameParameter"]["runtimeValue"]["constant"] == s["secretName"]
            pairs |= {(s["secretName"], m["secretKey"], m["envVar"]) for m in s["keyToEnv"]}
        expected = {(MLFLOW_SECRET, k, v) for k, v in MLFLOW_SECRET_ENV.items()}
        expected |= {(S3_SECRET, k, v) for k, v in S3_SECRET_ENV.items()}
        assert expected | {(S3_SECRET, "endpoint-url", "MLFLOW_S3_ENDPOINT_URL")} == pairs
    for executor in spec["deploymentSpec"]["executors"].values():
        assert "env" not in executor["container"], "no literal environment values in the spec"
    text = yaml.safe_dump(spec)
    assert "AWS_SECRET_ACCESS_KEY" not in text and "http://" not in text.replace("https://github.com", "")


def test_images_are_the_project_image_variants(spec: dict[str, Any]) -> None:
    tag = project_version()
    for name in STEPS:
        image = spec["deploymentSpec"]["executors"][f"exec-{name}"]["container"]["image"]
        variant = "cuda" if name in TRAINING else "cpu"
        assert image == f"{DEFAULT_REPOSITORY}:{tag}-{variant}"


def test_components_install_nothing_at_pod_start(spec: dict[str, Any]) -> None:
    for name, executor in spec["deploymentSpec"]["executors"].items():
        container = executor["container"]
        script = " ".join(container["command"] + container.get("args", []))
        assert "pip install" not in script and "pip" not in container["command"][2], name
        assert "kfp.dsl.executor_main" in script  # a lightweight component, run by the image's kfp


def test_components_call_the_step_functions(spec: dict[str, Any]) -> None:
    """Thin wrappers: each embedded component source imports its step function from pipeline.steps."""
    calls = {
        "extract-patches": "extract_patches_step",
        "pretrain-psnr": "pretrain_psnr_step",
        "finetune-gan": "finetune_gan_step",
        "interpolate": "interpolate_step",
        "evaluate": "evaluate_step",
        "register": "register_step",
    }
    for name, func in calls.items():
        source = spec["deploymentSpec"]["executors"][f"exec-{name}"]["container"]["command"][-1]
        assert f"from pipeline.steps import {func}" in source and f"{func}(" in source


def test_committed_pipeline_yaml_is_up_to_date(compiled: Path) -> None:
    committed = REPO / "pipeline.yaml"
    assert committed.is_file(), "pipeline.yaml is missing: run `.venv/bin/python -m pipeline compile`"
    assert committed.read_text() == compiled.read_text(), (
        "pipeline.yaml is stale (components, DAG or params.yaml changed): "
        "run `.venv/bin/python -m pipeline compile` and commit pipeline.yaml"
    )


def test_compile_cli_writes_the_package(tmp_path: Path, compiled: Path) -> None:
    from pipeline.__main__ import main

    out = tmp_path / "p.yaml"
    assert main(["compile", "--params", str(REPO / "params.yaml"), "-o", str(out)]) == 0
    assert out.read_text() == compiled.read_text()
    assert main(["compile", "-o", str(out), "--image-repository", "registry.local/esrgan", "--image-tag", "dev"]) == 0
    assert "image: registry.local/esrgan:dev-cuda" in out.read_text()
