"""The ``esrgan`` command line: a thin adapter over the core library and the pipeline steps.

Every sub-command parses arguments, calls library or step functions, and turns the known error
types into a one-line message and a non-zero exit status. What else lives here is glue that no
stage's output depends on (which is why ``tests/test_dvc_deps.py`` treats this file as an
adapter): defaults (the tracking URI, resource limits as twice the requests), argument checks,
and the order of a few registry calls (``registry promote`` moves the alias, then tags the version).
``esrgan stage`` and ``esrgan kfp`` live in :mod:`pipeline.stage_commands` and
:mod:`pipeline.kfp_commands`.

Exit status: 0 success; 1 some items of a batch failed (``upscale``); 2 a user error (bad
parameters, bad input files, unreachable tracking server: one ``esrgan: error:`` line per
problem, no traceback); 130 interrupted; ``PREEMPTED_EXIT_CODE`` a training run was preempted
and resumes when re-run. Anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.errors import EXIT_USER_ERROR, PipelineError

log = logging.getLogger("esrgan")

#: Exit status for bad input (unreadable model, missing file); 1 means "some items failed".
EXIT_BAD_INPUT = EXIT_USER_ERROR

Handler = Callable[[argparse.Namespace], int]


class UserError(PipelineError):
    """An error caused by the user's input; printed as one line without a traceback."""


def _error(message: str) -> None:
    import os

    from pipeline.errors import redact  # no password or token in what the user sees (or pastes)
    from pipeline.torchrun import under_torchrun

    if under_torchrun() and os.environ.get("RANK", "0") != "0":
        return  # the ranks of one launch fail alike: rank 0 says it once
    for line in redact(message).splitlines() or [""]:
        print(f"esrgan: error: {line}", file=sys.stderr)


def _user_error_types() -> tuple[type[BaseException], ...]:
    # Two families: the core library's (esrgan.errors) and the pipeline's (pipeline.errors);
    # plus the standard errors a user's path causes and a schema validation error.
    from pydantic import ValidationError

    from esrgan.errors import EsrganError

    return (PipelineError, EsrganError, FileNotFoundError, FileExistsError, NotADirectoryError, ValidationError)


def _error_lines(exc: BaseException) -> list[str]:
    """Every problem of a multi-problem error, one line each; else the first line of the message."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return [f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors()]
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return [type(exc).__name__]
    from esrgan.training import ConfigError

    return lines if isinstance(exc, (PipelineError, ConfigError)) else lines[:1]


# --- upscale -----------------------------------------------------------------------------------


def _add_upscale(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upscale", help="upscale image files and folders with a generator")
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders of images")
    p.add_argument(
        "--model", "-m", required=True, help="generator checkpoint (.pth/.safetensors), exported .onnx, or models:/ URI"
    )
    p.add_argument("--output", "-o", type=Path, required=True, help="output folder")
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile edge in input pixels; 0 = whole image; default: planned from image size and free memory",
    )
    p.add_argument("--tile-pad", type=int, default=None, help="context around each tile in input pixels")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (default auto)")
    p.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "torch", "onnxruntime", "openvino"],
        help="inference engine; auto: the fastest installed one within the fidelity bound of torch fp32",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "fp16", "bf16"],
        help="auto: the fastest within the fidelity bound (bf16 where the CPU has it; torch alone: fp32 on CPU)",
    )
    p.add_argument("--suffix", default="_x{scale}", help="appended to each output file name (default _x{scale})")
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    p.set_defaults(handler=_run_upscale)


def _run_upscale(args: argparse.Namespace) -> int:
    from pipeline.upscale_files import upscale_files

    return upscale_files(
        args.inputs,
        args.model,
        args.output,
        tile=args.tile,
        tile_pad=args.tile_pad,
        device=args.device,
        precision=args.precision,
        suffix=args.suffix,
        overwrite=args.overwrite,
        engine=args.engine,
    )


# --- data -------------------------------------------------------------------------------------


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="the HR dataset tracked by data.dvc")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    s = dsub.add_parser("sample", help="(re)build the embedded sample set and track it with DVC")
    s.add_argument("--out", type=Path, default=Path("data"))
    s.add_argument("--force", action="store_true", help="replace a dataset that differs from the sample set")
    s.add_argument("--no-dvc", action="store_true", help="do not run 'dvc add'")
    s.set_defaults(handler=lambda a: _print(_workspace().sample(a.out, force=a.force, track=not a.no_dvc)))
    i = dsub.add_parser("import", help="bring a folder of HR images (DIV2K, DF2K...) in and re-track it")
    i.add_argument("source", type=Path)
    i.add_argument("--out", type=Path, default=Path("data"))
    i.add_argument("--val-fraction", type=float, default=0.1)
    i.add_argument("--force", action="store_true", help="replace the current dataset (its DVC cache copy remains)")
    i.add_argument("--no-dvc", action="store_true")
    i.set_defaults(
        handler=lambda a: _print(
            _workspace().import_folder(a.source, a.out, val_fraction=a.val_fraction, force=a.force, track=not a.no_dvc)
        )
    )
    h = dsub.add_parser("holdout", help="write 9 photos that are not in the sample set, to evaluate on")
    h.add_argument("out", type=Path)
    h.set_defaults(handler=lambda a: _print(_holdout(a.out)))
    d = dsub.add_parser("download-div2k", help="download DIV2K HR (needs internet), then use 'data import'")
    d.add_argument("out", type=Path)
    d.set_defaults(handler=lambda a: _print({"path": str(_div2k(a.out))}))


def _workspace():
    from pipeline import workspace

    return workspace


def _holdout(out: Path) -> dict[str, object]:
    from esrgan.data import build_holdout_set

    entries = build_holdout_set(out)
    return {"path": str(out), "images": [{k: e[k] for k in ("name", "licence", "attribution")} for e in entries]}


def _div2k(out: Path) -> Path:
    from esrgan.data import download_div2k

    return download_div2k(out)


def _print(data: object) -> int:
    import json

    print(json.dumps(data, indent=2, default=str))
    return 0


# --- evaluate / train / interpolate (library entry points) -------------------------------------


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="PSNR/SSIM-Y, NIQE, LPIPS of a generator and bicubic on HR images")
    p.add_argument("--model", "-m", help="generator file; omit for the bicubic baseline alone")
    p.add_argument("--data", type=Path, required=True, help="folder of HR images (Set5/Set14/BSD100 style)")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--tile", type=int, default=0)
    p.add_argument("--metrics", default=None, help="comma-separated subset (default: all)")
    p.add_argument("--output", "-o", type=Path, help="write the JSON report here (default: print it)")
    p.set_defaults(handler=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from esrgan.evaluation import METRICS, evaluate_folder, write_report
    from pipeline.upscale_files import load_model_for_inference

    model = load_model_for_inference(args.model, "cpu") if args.model else None
    metrics = tuple(args.metrics.split(",")) if args.metrics else METRICS
    report = evaluate_folder(model, args.data, scale=args.scale, tile=args.tile, metrics=metrics)
    if args.output:
        write_report(report, args.output)
        summary = {"model": report["model"]["mean"], "bicubic": report["bicubic"]["mean"]}
        return _print(summary)
    return _print(report)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one stage of a profile (params.yaml, configs/params.paper.yaml)")
    p.add_argument("stage", choices=["psnr", "gan"])
    p.add_argument(
        "--config",
        "-c",
        type=Path,
        default=Path("params.yaml"),
        help="the profile whose model, pretrain_psnr/finetune_gan, runtime and logging sections to use",
    )
    p.add_argument("--patches", type=Path, required=True, help="folder with train/{hr,lr} and val/{hr,lr}")
    p.add_argument("--out", "-o", type=Path, required=True, help="run folder (checkpoints, samples, generator)")
    p.add_argument("--init", type=Path, help="generator to start the GAN stage from (the PSNR model)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from esrgan.training import train
    from esrgan.training.distributed import launched_rank
    from pipeline.params import load_params
    from pipeline.torchrun import launch, stage_processes, under_torchrun

    if args.stage == "gan" and args.init is None:
        raise UserError("train gan needs --init (the PSNR-oriented generator)")
    params = load_params(args.config)
    if not under_torchrun() and (count := stage_processes(params)) > 1:  # runtime.processes ranks
        return launch(["pipeline.cli", *args.argv], count, f"train {args.stage}")
    val = args.patches / "val"
    result = train(
        args.stage,
        params.train_config(),
        args.patches / "train" / "hr",
        args.patches / "train" / "lr",
        val / "hr" if val.is_dir() else None,
        val / "lr" if val.is_dir() else None,
        args.out,
        init_generator=args.init,
        resume=args.resume,
    )
    return _print(result.to_dict()) if launched_rank() == 0 else 0


def _add_interpolate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("interpolate", help="network interpolation between the PSNR and GAN generators")
    p.add_argument("--psnr", type=Path, required=True)
    p.add_argument("--gan", type=Path, required=True)
    p.add_argument("--alphas", default="0,0.2,0.4,0.6,0.8,1", help="comma-separated GAN weights in [0, 1]")
    p.add_argument("--out", "-o", type=Path, required=True, help="folder for alpha_<a>.pth files")
    p.set_defaults(handler=_run_interpolate)


def _run_interpolate(args: argparse.Namespace) -> int:
    from esrgan.models import interpolate_sweep

    try:
        alphas = [float(a) for a in args.alphas.split(",")]
    except ValueError:
        raise UserError(f"--alphas {args.alphas!r}: expected comma-separated numbers") from None
    return _print([str(p) for p in interpolate_sweep(args.psnr, args.gan, alphas, args.out)])


# --- pipeline ----------------------------------------------------------------------------------


def _add_stage(sub: argparse._SubParsersAction) -> None:
    from pipeline.stage_commands import add_stage_parsers

    add_stage_parsers(sub)


def _add_kfp(sub: argparse._SubParsersAction) -> None:
    from pipeline.kfp_commands import add_kfp_parsers

    add_kfp_parsers(sub)


def _add_main(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("main", help="the main job: sample data if missing, dvc repro, champion summary")
    p.add_argument(
        "--profile",
        choices=["paper"],
        default=None,
        help="copy configs/params.<profile>.yaml over params.yaml first (git checkout params.yaml undoes it)",
    )
    p.set_defaults(handler=_run_main)


def _run_main(args: argparse.Namespace) -> int:
    from pipeline.main_job import run_main_job

    return run_main_job(Path.cwd(), profile=args.profile)


# --- registry / export / deploy (champion-challenger deployment) ---------------------------------


def _tracking_uri(arg: str | None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the project's ``./mlflow.db`` (as the pipeline)."""
    import os

    # A registry command should fail in seconds when the server is down, not after MLflow's minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    uri = arg or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path.cwd() / 'mlflow.db').resolve()}"
    if uri.startswith(("http://", "https://")):
        # Probe first (one line within seconds), and keep the URI's password out of what MLflow prints.
        from pipeline.tracking import adopt_uri_credentials, check_reachable

        check_reachable(uri)
        uri = adopt_uri_credentials(uri)
    return uri


def _registry_call(fn: Callable[[], int]) -> int:
    from mlflow.exceptions import MlflowException

    from pipeline.champion import RegistryError

    try:
        return fn()
    except PipelineError:  # already one line (TrackingUnavailable is an OSError too)
        raise
    except RegistryError as exc:
        raise UserError(str(exc)) from None
    except MlflowException as exc:  # a call outside champion.registry_errors (an HTTP 401, a 500...)
        first = ((exc.message or str(exc)).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"MLflow tracking server: {first[:300]}") from None
    except OSError as exc:  # connection refused, DNS: requests' errors are OSErrors
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot reach the tracking server: {reason[:300]}") from None


def _add_registry(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("registry", help="the model registry: list versions, promote one, roll the champion back")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    p.add_argument("--model-name", default="esrgan-x4", help="registered model (default esrgan-x4)")
    p.add_argument("--alias", default="champion", help="the deployed alias (default champion)")
    rsub = p.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    ls = rsub.add_parser("list", help="versions, aliases, alpha, key metrics, data hash, commit, decision")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(handler=lambda a: _registry_call(lambda: _registry_list(a)))
    pr = rsub.add_parser("promote", help="make VERSION the champion (recorded in the champion history)")
    pr.add_argument("version", help="version number")
    pr.set_defaults(handler=lambda a: _registry_call(lambda: _registry_promote(a)))
    rb = rsub.add_parser("rollback", help="move the champion back to the previous champion")
    rb.set_defaults(handler=lambda a: _registry_call(lambda: _registry_rollback(a)))


def _registry_list(args: argparse.Namespace) -> int:
    from pipeline import champion

    client = champion.client(_tracking_uri(args.tracking_uri))
    rows = champion.list_versions(client, args.model_name)
    past = champion.history(client, args.model_name)
    if args.json:
        return _print({"model_name": args.model_name, "versions": rows, "champion_history": past})
    print(champion.format_table(args.model_name, rows, past))
    return 0


def _registry_promote(args: argparse.Namespace) -> int:
    from pipeline import champion

    if not args.version.isdigit():
        raise UserError(f"version {args.version!r}: expected a version number")
    client = champion.client(_tracking_uri(args.tracking_uri))
    before = champion.alias_version(client, args.model_name, args.alias)
    past = champion.promote(
        client, args.model_name, args.version, args.alias, "promoted by hand (esrgan registry promote)"
    )
    with champion.registry_errors(args.model_name):
        client.set_model_version_tag(args.model_name, args.version, "decision", "promoted-by-hand")
    print(
        f"{args.model_name}@{args.alias}: version {before or '(none)'} -> {args.version}  (history: {' -> '.join(past)})"
    )
    return 0


def _registry_rollback(args: argparse.Namespace) -> int:
    from pipeline import champion

    client = champion.client(_tracking_uri(args.tracking_uri))
    old, new = champion.rollback(client, args.model_name, args.alias)
    past = champion.history(client, args.model_name)
    print(f"{args.model_name}@{args.alias}: version {old} -> {new}  (history: {' -> '.join(past)})")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a generator to another format")
    esub = p.add_subparsers(dest="export_command", required=True, metavar="FORMAT")
    o = esub.add_parser("onnx", help="ONNX with dynamic height and width (input 'lr' in [0,1], output 'sr')")
    o.add_argument("model", help="generator checkpoint (.pth/.safetensors) or models:/ URI")
    o.add_argument("--output", "-o", required=True, help="the .onnx file to write (never one of the inputs)")
    o.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    o.add_argument("--opset", type=int, default=17)
    o.add_argument("--tracking-uri", help="for models:/ URIs (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    o.set_defaults(handler=_run_export_onnx)


def _export_output(output: str, model: str, overwrite: bool) -> Path:
    """The export's output file, checked before any work: never a folder, never the input, and an
    existing file only with ``--overwrite``."""
    import os

    path = Path(output)
    if output.endswith(("/", os.sep)) or path.is_dir():
        raise UserError(f"{output}: is a folder; give the .onnx file to write (-o {path / 'model.onnx'})")
    if path.suffix.lower() != ".onnx":
        raise UserError(f"{output}: an ONNX export must end in .onnx (nothing written)")
    source = Path(model)
    if path.exists() and source.exists() and os.path.samefile(path, source):
        raise UserError(f"{output}: is the input model; the export would replace it (nothing written)")
    if path.exists() and not overwrite:
        raise UserError(f"{output}: already exists; pass --overwrite to replace it")
    return path


def _run_export_onnx(args: argparse.Namespace) -> int:
    import time

    from esrgan.export import export_onnx
    from pipeline.upscale_files import load_model_for_inference

    output = _export_output(args.output, args.model, args.overwrite)

    if args.model.startswith(("models:/", "runs:/")):
        import mlflow

        # MLflow's errors (unknown model, alias, version, run) become one line in the loader.
        mlflow.set_tracking_uri(_tracking_uri(args.tracking_uri))
    model = load_model_for_inference(args.model, "cpu")
    start = time.perf_counter()
    path = export_onnx(model, output, opset=args.opset)
    return _print(
        {
            "path": str(path),
            "bytes": path.stat().st_size,
            "seconds": round(time.perf_counter() - start, 2),
            "architecture": model.config,
        }
    )


def _add_deploy(sub: argparse._SubParsersAction) -> None:
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
    k.set_defaults(handler=lambda a: _registry_call(lambda: _run_deploy_kserve(a)))
    from pipeline.trainjob import add_deploy_parser

    add_deploy_parser(dsub)  # esrgan deploy trainjob


def _double(quantity: str) -> str:
    import re

    m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", quantity)
    if not m:
        raise UserError(f"{quantity!r}: expected a Kubernetes quantity such as 2, 500m or 4Gi")
    value = float(m.group(1)) * 2
    return f"{value:g}{m.group(2)}"


def _run_deploy_kserve(args: argparse.Namespace) -> int:
    from pipeline import champion, kserve

    client = champion.client(_tracking_uri(args.tracking_uri))
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


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_upscale,
    _add_data,
    _add_evaluate,
    _add_train,
    _add_interpolate,
    _add_stage,
    _add_kfp,
    _add_main,
    _add_registry,
    _add_export,
    _add_deploy,
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(prog="esrgan", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``esrgan`` console script."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a torchrun launch repeats in each rank
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    from pipeline.errors import install_log_redaction

    install_log_redaction()  # credentials masked in every log line (MLflow's, urllib3's, ours)
    try:
        return int(args.handler(args))
    except _user_error_types() as exc:
        for line in _error_lines(exc):
            _error(line)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:
        from esrgan.training import PREEMPTED_EXIT_CODE, TrainingPreempted
        from pipeline.torchrun import EXIT_LOST_PEER, lost_peer

        if lost_peer(exc):  # another rank died or hung: the launcher names it, in one line
            return EXIT_LOST_PEER
        if isinstance(exc, TrainingPreempted):
            # Not 0: Kubernetes/KFP must retry (and resume) rather than mark the stage done.
            _error(f"preempted: {exc}")
            return PREEMPTED_EXIT_CODE
        raise


if __name__ == "__main__":
    sys.exit(main())
