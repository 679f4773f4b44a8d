"""``esrgan kfp COMMAND``: compile, run locally or submit the Kubeflow Pipelines pipeline.

esrgan kfp compile                      # writes ./pipeline.yaml (commit it)
esrgan kfp run-local [key=value ...]    # whole pipeline with kfp.local, sample data
esrgan kfp submit --host URL [--experiment esrgan] [key=value ...]
esrgan kfp train-task ...               # one rank of a training task (what the task launches)

Like :mod:`pipeline.cli.stage`, an adapter: each command parses its arguments and calls one
function (:func:`pipeline.kfp.dag.compile_pipeline`, :func:`pipeline.kfp.run.run_local`,
:func:`pipeline.kfp.run.submit`). kfp is imported only when a command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.images import DEFAULT_REPOSITORY

PACKAGE = Path("pipeline.yaml")


def _compile(args: argparse.Namespace) -> int:
    from pipeline.images import Images
    from pipeline.kfp.dag import compile_pipeline

    out = compile_pipeline(args.output, args.params, Images.for_version(args.image_repository, args.image_tag))
    print(f"wrote {out}")
    return 0


def _run_local(args: argparse.Namespace) -> int:
    from pipeline.cli.main_job import ensure_data
    from pipeline.kfp.run import load_params_doc, run_local

    data = args.data
    if data is None:
        data = Path(load_params_doc(args.params)["data"]["path"])
        print(f"==> HR dataset: {ensure_data(Path.cwd(), data.resolve())} ({data})")
    record = run_local(args.params, data, args.workdir, args.overrides)
    print(json.dumps(record, indent=2))
    return 0


def _submit(args: argparse.Namespace) -> int:
    from pipeline.kfp.run import shown_url, submit

    caching = {"default": None, "on": True, "off": False}[args.caching]
    run_id = submit(
        args.host,
        args.package,
        args.overrides,
        params_file=args.params,
        experiment=args.experiment,
        run_name=args.run_name,
        namespace=args.namespace,
        enable_caching=caching,
    )
    print(f"submitted run {run_id} to {shown_url(args.host)} (experiment {args.experiment})")
    return 0


def _train_task(args: argparse.Namespace) -> int:
    from pipeline.kfp.params import parse_override
    from pipeline.kfp.train_task import TrainTask

    tags = dict(parse_override(t) for t in args.tag)
    a = args
    metrics = TrainTask(a.stage, a.config, a.patches, a.init, a.run_dir, a.model_out, a.metrics, tags).run()
    if metrics:  # rank 0 (the other ranks return nothing)
        print(json.dumps(metrics, indent=2))
    return 0


def add_kfp_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``esrgan kfp <command>`` sub-commands."""
    p = sub.add_parser("kfp", help="Kubeflow Pipelines: compile pipeline.yaml, run it locally, submit it")
    ksub = p.add_subparsers(dest="kfp_command", required=True, metavar="ACTION")

    c = ksub.add_parser("compile", help="compile the KFP pipeline to pipeline.yaml")
    c.add_argument("--params", type=Path, default=Path("params.yaml"), help="defaults of the pipeline parameters")
    c.add_argument("--output", "-o", type=Path, default=PACKAGE)
    c.add_argument("--image-repository", default=DEFAULT_REPOSITORY, help="image without tag (default %(default)s)")
    c.add_argument("--image-tag", default=None, help="tag before -cpu/-cuda (default: the package version)")
    c.set_defaults(handler=_compile)

    r = ksub.add_parser("run-local", help="run the whole pipeline here with kfp.local (SubprocessRunner)")
    r.add_argument("--params", type=Path, default=Path("params.yaml"))
    r.add_argument("--data", type=Path, default=None, help="HR dataset folder (default: data.path of --params)")
    r.add_argument("--workdir", type=Path, default=Path("outputs/kfp-local"), help="artifacts and checkpoints")
    r.add_argument("overrides", nargs="*", metavar="key=value", help="pipeline parameter or dotted params key")
    r.set_defaults(handler=_run_local)

    s = ksub.add_parser("submit", help="create a run on a Kubeflow Pipelines cluster")
    s.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
    s.add_argument("--package", type=Path, default=PACKAGE)
    s.add_argument("--experiment", "-e", default="esrgan")
    s.add_argument("--run-name", default=None)
    s.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user installs)")
    s.add_argument("--params", type=Path, default=None, help="send this params.yaml instead of the compiled one")
    s.add_argument(
        "--caching",
        choices=["default", "on", "off"],
        default="default",
        help="override every task's caching setting for this run",
    )
    s.add_argument("overrides", nargs="*", metavar="key=value", help="pipeline parameter or dotted params key")
    s.set_defaults(handler=_submit)

    # What each rank of a training task runs (in the task's pod under torchrun, or in a TrainJob's pods).
    t = ksub.add_parser("train-task", help="one rank of a KFP training task (the task launches it)")
    t.add_argument("--stage", required=True, choices=["pretrain_psnr", "finetune_gan"])
    for option in ("--config", "--patches", "--run-dir", "--model-out", "--metrics"):
        t.add_argument(option, type=Path, required=True)
    t.add_argument("--init", type=Path, help="the PSNR generator (finetune_gan)")
    t.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="tag of the MLflow parent run")
    t.set_defaults(handler=_train_task)
