"""``esrgan deploy kserve|trainjob``: manifests for serving a registered version and for multi-node training."""

from __future__ import annotations

import argparse
import sys

from pipeline.cli.common import UserError, registry_call, tracking_uri


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("deploy", help="print deployment manifests for a registered version")
    dsub = p.add_subparsers(dest="deploy_command", required=True, metavar="TARGET")
    k = dsub.add_parser("kserve", help="a KServe InferenceService for kubectl apply -f -")
    k.add_argument("--model", default="models:/esrgan-x4@champion", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    k.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    k.add_argument(
        "--artifacts-destination", help="the server's --artifacts-destination (s3://...) when it proxies artifacts"
    )
    k.add_argument("--name", help="InferenceService name (default: the registered model's name)")
    k.add_argument("--namespace")
    k.add_argument("--secret", default="esrgan-s3", help="Secret with the S3 credentials (default esrgan-s3)")
    k.add_argument("--min-replicas", type=int, default=1)
    k.add_argument("--max-replicas", type=int, default=2)
    k.add_argument("--cpu", default="2", help="CPU request per replica (limit: twice this)")
    k.add_argument("--memory", default="4Gi", help="memory request per replica (limit: twice this)")
    k.add_argument("--gpus", type=int, default=0)
    k.add_argument(
        "--runtime",
        choices=("onnx", "torch", "mlserver"),
        help="onnx: the torch-free serving image, OpenVINO on model.onnx (default on CPUs); torch: the project "
        "image, PyTorch (default with --gpus); mlserver: KServe's mlflow format (see docs/deployment.md)",
    )
    k.add_argument("--image", help="predictor image for onnx/torch (default <repository>:<version>-serve/-cpu/-cuda)")
    k.add_argument("--image-repository", help="repository of the default predictor image (default ghcr.io/owner/...)")
    k.add_argument("--serving-runtime", help="with --runtime mlserver: a ServingRuntime whose image has PyTorch")
    k.add_argument("--canary", type=int, help="percent of traffic for the new revision (KServe canary rollout)")
    k.set_defaults(handler=lambda a: registry_call(lambda: _run_deploy_kserve(a)))
    from pipeline.kfp.trainjob import add_deploy_parser

    add_deploy_parser(dsub)  # esrgan deploy trainjob


def _double(quantity: str) -> str:
    import re

    m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", quantity)
    if not m:
        raise UserError(f"{quantity!r}: expected a Kubernetes quantity such as 2, 500m or 4Gi")
    value = float(m.group(1)) * 2
    return f"{value:g}{m.group(2)}"


def _run_deploy_kserve(args: argparse.Namespace) -> int:
    from pipeline.registry import aliases, kserve

    client = aliases.client(tracking_uri(args.tracking_uri))
    resolved = kserve.resolve(client, args.model, args.artifacts_destination)
    resources = kserve.Resources(args.cpu, args.memory, _double(args.cpu), _double(args.memory), args.gpus)
    docs = kserve.inference_service(
        resolved,
        name=args.name,
        namespace=args.namespace,
        secret=args.secret,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        resources=resources,
        runtime=args.runtime,
        serving_runtime=args.serving_runtime,
        image=args.image,
        repository=args.image_repository,
        canary_percent=args.canary,
    )
    print(f"# {args.model} = {resolved.name} version {resolved.version}", file=sys.stderr)
    sys.stdout.write(kserve.to_yaml(docs))
    return 0
