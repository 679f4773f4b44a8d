"""``esrgan deploy kserve --runtime``: which predictor serves the version (no cluster, no registry:
the manifest from a resolved version). The S3 location itself: ``tests/e2e/test_kserve.py``."""

from __future__ import annotations

import pytest

from pipeline.registry.aliases import RegistryError
from pipeline.registry.kserve import MODEL_MOUNT, ResolvedVersion, Resources, inference_service

VERSION = ResolvedVersion("esrgan-x4", "7", "models:/esrgan-x4@champion", "s3://b/1/models/m-7/artifacts", ["champion"])


def predictor(**kwargs: object) -> dict:
    account, service = inference_service(VERSION, **kwargs)  # type: ignore[arg-type]
    assert account["kind"] == "ServiceAccount" and service["kind"] == "InferenceService"
    return service["spec"]["predictor"]


def test_default_on_cpus_is_the_torch_free_image_serving_the_version_from_kserve_storage() -> None:
    spec = predictor(repository="ghcr.io/me/esrgan-pipeline", tag="1.2.3")
    assert "model" not in spec
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"  # the name KServe's storage initializer looks for
    assert container["image"] == "ghcr.io/me/esrgan-pipeline:1.2.3-serve"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["STORAGE_URI"] == VERSION.storage_uri and env["ESRGAN_ENGINE"] == "auto"
    assert int(env["MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"]) >= 600
    command = container["command"]
    assert command[:3] == ["mlflow", "models", "serve"] and command[command.index("-m") + 1] == MODEL_MOUNT
    assert command[command.index("--port") + 1] == "8080" == str(container["ports"][0]["containerPort"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/ping", "port": 8080}
    assert container["resources"] == Resources().manifest()
    assert spec["serviceAccountName"] == "esrgan-x4-storage"  # the S3 secret still reaches the initializer


def test_torch_runtime_uses_the_project_image_and_gpus_pick_it_by_default() -> None:
    (cpu,) = predictor(runtime="torch", repository="r/e", tag="1")["containers"]
    assert cpu["image"] == "r/e:1-cpu" and {"name": "ESRGAN_ENGINE", "value": "torch"} in cpu["env"]
    (gpu,) = predictor(resources=Resources(gpus=1), repository="r/e", tag="1")["containers"]
    assert gpu["image"] == "r/e:1-cuda" and gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    (own,) = predictor(runtime="onnx", image="registry.local/serve:abc")["containers"]
    assert own["image"] == "registry.local/serve:abc"


def test_mlserver_runtime_is_kserves_mlflow_format() -> None:
    spec = predictor(runtime="mlserver", serving_runtime="mlserver-torch")
    assert "containers" not in spec
    assert spec["model"]["modelFormat"] == {"name": "mlflow"} and spec["model"]["runtime"] == "mlserver-torch"
    assert spec["model"]["storageUri"] == VERSION.storage_uri


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"runtime": "tensorrt"}, "--runtime tensorrt: expected one of onnx, torch, mlserver"),
        ({"runtime": "onnx", "resources": Resources(gpus=1)}, "with --gpus use --runtime torch"),
        ({"runtime": "onnx", "serving_runtime": "x"}, "--serving-runtime applies to --runtime mlserver"),
        ({"runtime": "mlserver", "image": "x"}, "--image applies to --runtime onnx or torch"),
    ],
)
def test_contradictions_are_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(RegistryError, match=message.replace("(", r"\(")):
        inference_service(VERSION, **kwargs)


def test_cli_offers_the_runtimes() -> None:
    from pipeline.cli import build_parser

    args = build_parser().parse_args(["deploy", "kserve", "--runtime", "torch", "--image-repository", "r/e"])
    assert (args.runtime, args.image_repository, args.image, args.serving_runtime) == ("torch", "r/e", None, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["deploy", "kserve", "--runtime", "tensorrt"])
