"""The compiled KFP pipeline: structure, cluster settings, images, and the committed pipeline.yaml."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.images import DEFAULT_REPOSITORY, Images, project_version
from pipeline.kfp.dag import MLFLOW_SECRET, MLFLOW_SECRET_ENV, S3_SECRET, S3_SECRET_ENV, compile_pipeline

REPO = Path(__file__).resolve().parents[3]
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
    # One pipeline parameter sets the GPU request and what the task is told it has, so
    # runtime.processes: auto (one rank per visible GPU) matches the request by construction.
    assert spec["root"]["inputDefinitions"]["parameters"]["training_gpus"]["defaultValue"] == 1
    all_tasks = tasks(spec)
    for name in TRAINING:
        res = spec["deploymentSpec"]["executors"][f"exec-{name}"]["container"]["resources"]
        assert res["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert res["accelerator"]["resourceCount"] == "{{$.inputs.parameters['pipelinechannel--training_gpus']}}"
        inputs = all_tasks[name]["inputs"]["parameters"]
        assert inputs["gpus"] == {"componentInputParameter": "training_gpus"}
        # the same claim the task mounts, for the TrainJob it creates with runtime.nodes > 1
        assert inputs["checkpoint_pvc"] == {"componentInputParameter": "checkpoint_pvc"}
        assert inputs["pipelinechannel--training_gpus"] == {"componentInputParameter": "training_gpus"}
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
    # Nor in a parameter: no default or constant names a secret or an (unencrypted) endpoint.
    values = [str(v) for v in parameter_values(spec)]
    assert values and not [v for v in values if "AWS_SECRET_ACCESS_KEY" in v or "http://" in v]


def parameter_values(node: Any) -> list[Any]:
    """Every parameter default and runtime constant anywhere in the spec (nested values flattened)."""
    if isinstance(node, list):
        return [v for item in node for v in parameter_values(item)]
    if not isinstance(node, dict):
        return []
    found = [v for k, v in node.items() if k in ("defaultValue", "constant")]
    found = [leaf for v in found for leaf in (leaves(v) if isinstance(v, (dict, list)) else [v])]
    return found + [
        v for k, child in node.items() if k not in ("defaultValue", "constant") for v in parameter_values(child)
    ]


def leaves(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [leaf for v in node.values() for leaf in leaves(v)]
    if isinstance(node, list):
        return [leaf for v in node for leaf in leaves(v)]
    return [node]


def test_images_are_the_project_image_variants(spec: dict[str, Any]) -> None:
    tag = project_version()
    for name in STEPS:
        image = spec["deploymentSpec"]["executors"][f"exec-{name}"]["container"]["image"]
        variant = "cuda" if name in TRAINING else "cpu"
        assert image == f"{DEFAULT_REPOSITORY}:{tag}-{variant}"


def test_components_install_nothing_at_pod_start(spec: dict[str, Any]) -> None:
    """Every executor runs the launcher KFP writes for ``install_kfp_package=False`` (no pip step)."""
    from kfp import dsl

    def probe(x):  # type: ignore[no-untyped-def]
        return x

    probe.__annotations__ = {"x": int, "return": int}  # real types: this module postpones annotations
    launcher = dsl.component(probe, base_image="x", install_kfp_package=False).component_spec.implementation
    expected = launcher.container.command[:3]
    for name, executor in spec["deploymentSpec"]["executors"].items():
        container = executor["container"]
        assert container["command"][:3] == expected, name
        assert container["args"][:3] == ["--executor_input", "{{$}}", "--function_to_execute"], name


def embedded_function(executor: dict[str, Any]) -> ast.FunctionDef:
    """The component function KFP embedded in an executor's command, parsed."""
    container = executor["container"]
    name = container["args"][container["args"].index("--function_to_execute") + 1]
    tree = ast.parse(container["command"][-1])
    (func,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    return func


def test_components_call_the_step_functions(spec: dict[str, Any]) -> None:
    """Thin wrappers: each embedded component function imports its step function from the step's own
    module (pipeline.steps.<stage>, one hop for a reader) and calls it."""
    calls = {
        "extract-patches": "extract_patches_step",
        "pretrain-psnr": "pretrain_psnr_step",
        "finetune-gan": "finetune_gan_step",
        "interpolate": "interpolate_step",
        "evaluate": "evaluate_step",
        "register": "register_step",
    }
    for name, step in calls.items():
        func = embedded_function(spec["deploymentSpec"]["executors"][f"exec-{name}"])
        imported = {(n.module, a.name) for n in ast.walk(func) if isinstance(n, ast.ImportFrom) for a in n.names}
        called = {n.func.id for n in ast.walk(func) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        # The training tasks hand their step to run_training, which calls it in each rank it runs.
        handed = {
            a.id
            for n in ast.walk(func)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "run_training"
            for a in n.args
            if isinstance(a, ast.Name)
        }
        assert (f"pipeline.steps.{step.removesuffix('_step')}", step) in imported, name
        assert step in called | handed, name


def test_task_dependencies_follow_the_data_flow(spec: dict[str, Any]) -> None:
    deps = {n: set(t.get("dependentTasks", [])) for n, t in tasks(spec).items()}
    assert deps["extract-patches"] == {"resolve-params"}
    assert {"extract-patches", "resolve-params"} <= deps["pretrain-psnr"]
    assert {"extract-patches", "pretrain-psnr"} <= deps["finetune-gan"]
    assert {"pretrain-psnr", "finetune-gan"} <= deps["for-loop-1"]
    assert "interpolate" in deps["evaluate"]
    assert "for-loop-1" in deps["register"]


def test_committed_pipeline_yaml_is_up_to_date(compiled: Path) -> None:
    committed = REPO / "pipeline.yaml"
    assert committed.is_file(), "pipeline.yaml is missing: run `.venv/bin/esrgan kfp compile`"
    assert committed.read_text() == compiled.read_text(), (
        "pipeline.yaml is stale (components, DAG or params.yaml changed): "
        "run `.venv/bin/esrgan kfp compile` and commit pipeline.yaml"
    )


def test_compile_cli_writes_the_package(tmp_path: Path, compiled: Path) -> None:
    from pipeline.cli import main

    out = tmp_path / "p.yaml"
    assert main(["kfp", "compile", "--params", str(REPO / "params.yaml"), "-o", str(out)]) == 0
    assert out.read_text() == compiled.read_text()
    assert (
        main(["kfp", "compile", "-o", str(out), "--image-repository", "registry.local/esrgan", "--image-tag", "dev"])
        == 0
    )
    executors = next(yaml.safe_load_all(out.read_text()))["deploymentSpec"]["executors"]
    images = {name: e["container"]["image"] for name, e in executors.items()}
    assert images == {f"exec-{n}": f"registry.local/esrgan:dev-{'cuda' if n in TRAINING else 'cpu'}" for n in STEPS}
