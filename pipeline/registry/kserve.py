"""``esrgan deploy kserve``: a KServe ``InferenceService`` serving one registered version.

KServe cannot resolve ``models:/name@alias`` itself: it downloads a storage URI. So the alias is
resolved here, when the manifest is written, to the version's artifact location in S3, and the
manifest is re-applied after each promotion or rollback (``docs/deployment.md``); KServe then
rolls out a new revision of the predictor. The version is recorded in the annotations, so
``kubectl get isvc -o yaml`` tells which registry version is live.

Credentials are never part of the manifest: the predictor's service account references a
Secret (created once, see the docs) that holds them and KServe's S3 annotations.

How the predictor serves (``--runtime``):

- ``onnx`` (the default on CPUs): the torch-free serving image (``Dockerfile.serve``,
  ``<repository>:<tag>-serve``) runs ``mlflow models serve`` on the version, which KServe's
  storage initializer downloads to ``/mnt/models``; the pyfunc upscales through OpenVINO on the
  version's ``model.onnx``.
- ``torch`` (the default with ``--gpus``): the same container command in the project image
  (``-cpu``, or ``-cuda`` with GPUs), PyTorch on the generator.
- ``mlserver``: KServe's own ``mlflow`` model format (MLServer, Open Inference Protocol v2), with
  ``--serving-runtime NAME`` pinning a ServingRuntime whose image has PyTorch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pipeline.registry.aliases import RegistryError, registry_errors

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

ANNOTATION_PREFIX = "esrgan.mlflow.org"
#: ``--runtime`` choices (module docstring).
RUNTIMES = ("onnx", "torch", "mlserver")
#: Where KServe's storage initializer puts ``storageUri`` / ``STORAGE_URI`` in the predictor container.
MODEL_MOUNT = "/mnt/models"
#: The port KServe routes to in a custom predictor container.
PORT = 8080
#: MLflow's scoring server, as the serving image's CMD runs it (the project image's CMD is ``esrgan --help``).
SERVE_COMMAND = ["mlflow", "models", "serve", "-m", MODEL_MOUNT, "--env-manager", "local", "--host", "0.0.0.0"]
#: Seconds a request may take (MLflow's default, 60 s, cuts off a 1-megapixel request on a small CPU node).
REQUEST_TIMEOUT = 600


@dataclass(frozen=True)
class Resources:
    """Requests and limits of each predictor replica (Kubernetes quantities)."""

    cpu_request: str = "2"
    memory_request: str = "4Gi"
    cpu_limit: str = "4"
    memory_limit: str = "8Gi"
    gpus: int = 0

    def manifest(self) -> dict[str, dict[str, str]]:
        out = {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }
        if self.gpus:
            out["requests"]["nvidia.com/gpu"] = out["limits"]["nvidia.com/gpu"] = str(self.gpus)
        return out


@dataclass(frozen=True)
class ResolvedVersion:
    """A registry URI resolved to one version and the S3 location of its files."""

    name: str
    version: str
    source: str
    storage_uri: str
    aliases: list[str] = field(default_factory=list)


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name@alias`` or ``models:/name/version`` -> ``(name, version, alias)``."""
    m = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", uri.strip())
    if not m:
        raise RegistryError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    return m.group(1), m.group(3), m.group(2)


def to_s3(location: str, artifacts_destination: str | None) -> str:
    """The S3 URI of an artifact location.

    ``s3://`` locations are returned as they are. A server that proxies artifacts
    (``mlflow server --artifacts-destination s3://bucket/prefix``) hands out
    ``mlflow-artifacts:/<path>`` locations, which live at ``<destination>/<path>``; the client
    cannot see the destination, so it must be given.
    """
    parsed = urlparse(location)
    if parsed.scheme == "s3":
        return location.rstrip("/")
    if parsed.scheme in ("mlflow-artifacts", "http", "https"):
        if not artifacts_destination:
            raise RegistryError(
                f"{location}: artifacts are proxied by the MLflow server; pass --artifacts-destination "
                "(the server's --artifacts-destination, s3://BUCKET/PREFIX)"
            )
        if not artifacts_destination.startswith("s3://"):
            raise RegistryError(f"--artifacts-destination {artifacts_destination}: expected s3://BUCKET[/PREFIX]")
        path = parsed.path
        if parsed.scheme in ("http", "https"):  # http://host/api/2.0/mlflow-artifacts/artifacts/<path>
            path = path.split("/mlflow-artifacts/artifacts", 1)[-1]
        return f"{artifacts_destination.rstrip('/')}/{path.lstrip('/')}".rstrip("/")
    raise RegistryError(f"{location}: the version's files are not in S3, so KServe cannot download them")


def resolve(mlflow_client: MlflowClient, model_uri: str, artifacts_destination: str | None = None) -> ResolvedVersion:
    """Resolve a ``models:/`` URI to its version and that version's S3 artifact location."""
    name, version, alias = parse_models_uri(model_uri)
    with registry_errors(name):
        if alias is not None:
            mv = mlflow_client.get_model_version_by_alias(name, alias)
        else:
            assert version is not None  # parse_models_uri gives one of the two
            mv = mlflow_client.get_model_version(name, version)
        location = mlflow_client.get_model_version_download_uri(name, str(mv.version))
    return ResolvedVersion(
        name, str(mv.version), model_uri, to_s3(location, artifacts_destination), list(mv.aliases or [])
    )


def default_runtime(gpus: int) -> str:
    """``onnx`` on CPUs (the torch-free image, the fastest CPU engine), ``torch`` with GPUs."""
    return "torch" if gpus else "onnx"


def serving_image(runtime: str, repository: str, tag: str, gpus: int = 0) -> str:
    """The predictor image of ``runtime``: ``<repository>:<tag>-serve``, ``-cpu`` or ``-cuda``."""
    if runtime == "onnx":
        return f"{repository}:{tag}-serve"
    if runtime == "torch":
        return f"{repository}:{tag}-{'cuda' if gpus else 'cpu'}"
    raise RegistryError(f"--runtime {runtime}: the mlserver runtime's image comes from its ServingRuntime")


def _container(runtime: str, image: str, storage_uri: str, resources: Resources) -> dict[str, Any]:
    """KServe's custom predictor container: storage initializer via ``STORAGE_URI``, MLflow's server."""
    env = [
        {"name": "STORAGE_URI", "value": storage_uri},
        {"name": "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "value": str(REQUEST_TIMEOUT)},
        {"name": "ESRGAN_ENGINE", "value": "torch" if runtime == "torch" else "auto"},
    ]
    probe = {"httpGet": {"path": "/ping", "port": PORT}, "periodSeconds": 5}
    return {
        "name": "kserve-container",
        "image": image,
        "command": [*SERVE_COMMAND, "--port", str(PORT)],
        "env": env,
        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": probe,
        "resources": resources.manifest(),
    }


def _k8s_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"m-{name}"
    return name[:63].rstrip("-")


def inference_service(
    resolved: ResolvedVersion,
    *,
    name: str | None = None,
    namespace: str | None = None,
    secret: str = "esrgan-s3",
    service_account: str | None = None,
    min_replicas: int = 1,
    max_replicas: int = 2,
    resources: Resources | None = None,
    runtime: str | None = None,
    serving_runtime: str | None = None,
    image: str | None = None,
    repository: str | None = None,
    tag: str | None = None,
    canary_percent: int | None = None,
) -> list[dict[str, Any]]:
    """The manifests to apply: a ServiceAccount that carries the S3 secret, and the InferenceService.

    ``runtime`` (:data:`RUNTIMES`, default :func:`default_runtime`): ``onnx`` and ``torch`` run a
    custom predictor container (``image``, else :func:`serving_image` of ``repository`` and ``tag``)
    that serves the version with MLflow's scoring server (``POST /invocations``); ``mlserver`` uses
    KServe's ``mlflow`` model format (Open Inference Protocol v2), ``serving_runtime`` pinning a
    ServingRuntime by name (one whose image has PyTorch, see the docs).
    """
    resources = resources or Resources()
    runtime = runtime or default_runtime(resources.gpus)
    if runtime not in RUNTIMES:
        raise RegistryError(f"--runtime {runtime}: expected one of {', '.join(RUNTIMES)}")
    if runtime == "onnx" and resources.gpus:
        raise RegistryError("--runtime onnx serves on CPUs (OpenVINO); with --gpus use --runtime torch")
    if serving_runtime and runtime != "mlserver":
        raise RegistryError(f"--serving-runtime applies to --runtime mlserver, not {runtime}")
    if image and runtime == "mlserver":
        raise RegistryError("--image applies to --runtime onnx or torch; mlserver's image is its ServingRuntime's")
    if min_replicas < 0 or max_replicas < max(1, min_replicas):
        raise RegistryError(f"replicas: need 0 <= min ({min_replicas}) <= max ({max_replicas}) and max >= 1")
    if canary_percent is not None and not 0 <= canary_percent <= 100:
        raise RegistryError(f"--canary {canary_percent}: expected a percentage between 0 and 100")
    isvc_name = _k8s_name(name or resolved.name)
    sa_name = service_account or f"{isvc_name}-storage"
    meta: dict[str, Any] = {"name": sa_name}
    if namespace:
        meta["namespace"] = namespace
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "secrets": [{"name": secret}]}
    predictor: dict[str, Any] = {
        "serviceAccountName": sa_name,
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
    }
    if runtime == "mlserver":
        model: dict[str, Any] = {
            "modelFormat": {"name": "mlflow"},
            "protocolVersion": "v2",
            "storageUri": resolved.storage_uri,
            "resources": resources.manifest(),
        }
        if serving_runtime:
            model["runtime"] = serving_runtime
        predictor["model"] = model
    else:
        if image is None:
            from pipeline.images import DEFAULT_REPOSITORY, project_version

            image = serving_image(runtime, repository or DEFAULT_REPOSITORY, tag or project_version(), resources.gpus)
        predictor["containers"] = [_container(runtime, image, resolved.storage_uri, resources)]
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    isvc_meta: dict[str, Any] = {
        "name": isvc_name,
        "labels": {"app.kubernetes.io/name": isvc_name, "app.kubernetes.io/part-of": "esrgan-pipeline"},
        "annotations": {
            f"{ANNOTATION_PREFIX}/registered-model": resolved.name,
            f"{ANNOTATION_PREFIX}/version": resolved.version,
            f"{ANNOTATION_PREFIX}/source": resolved.source,
            f"{ANNOTATION_PREFIX}/aliases": ",".join(sorted(resolved.aliases)),
            f"{ANNOTATION_PREFIX}/runtime": runtime,
        },
    }
    if namespace:
        isvc_meta["namespace"] = namespace
    service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": isvc_meta,
        "spec": {"predictor": predictor},
    }
    return [account, service]


def to_yaml(documents: list[dict[str, Any]]) -> str:
    """Multi-document YAML for ``kubectl apply -f -``."""
    import yaml

    return yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True)
