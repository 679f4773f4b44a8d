"""``python -m pipeline``: compile, run locally or submit the Kubeflow Pipelines pipeline.

python -m pipeline compile                      # writes ./pipeline.yaml (commit it)
python -m pipeline run-local [key=value ...]    # whole pipeline with kfp.local, sample data
python -m pipeline submit --host URL [--experiment esrgan] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from components.build import DEFAULT_REPOSITORY

PACKAGE = Path("pipeline.yaml")


def _compile(args: argparse.Namespace) -> int:
    from components.build import Images
    from pipeline.kfp_dag import compile_pipeline

    out = compile_pipeline(args.output, args.params, Images.for_version(args.image_repository, args.image_tag))
    print(f"wrote {out}")
    return 0


def _run_local(args: argparse.Namespace) -> int:
    from pipeline.kfp_run import load_params_doc, run_local
    from pipeline.main_job import ensure_data

    data = args.data
    if data is None:
        data = Path(load_params_doc(args.params)["data"]["path"])
        print(f"==> HR dataset: {ensure_data(Path.cwd(), data.resolve())} ({data})")
    record = run_local(args.params, data, args.workdir, args.overrides)
    print(json.dumps(record, indent=2))
    return 0


def _submit(args: argparse.Namespace) -> int:
    from pipeline.kfp_run import submit

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
    print(f"submitted run {run_id} to {args.host} (experiment {args.experiment})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compile", help="compile the KFP pipeline to pipeline.yaml")
    c.add_argument("--params", type=Path, default=Path("params.yaml"), help="defaults of the pipeline parameters")
    c.add_argument("--output", "-o", type=Path, default=PACKAGE)
    c.add_argument("--image-repository", default=DEFAULT_REPOSITORY, help="image without tag (default %(default)s)")
    c.add_argument("--image-tag", default=None, help="tag before -cpu/-cuda (default: the package version)")
    c.set_defaults(handler=_compile)

    r = sub.add_parser("run-local", help="run the whole pipeline here with kfp.local (SubprocessRunner)")
    r.add_argument("--params", type=Path, default=Path("params.yaml"))
    r.add_argument("--data", type=Path, default=None, help="HR dataset folder (default: data.path of --params)")
    r.add_argument("--workdir", type=Path, default=Path("outputs/kfp-local"), help="artifacts and checkpoints")
    r.add_argument("overrides", nargs="*", metavar="key=value", help="pipeline parameter or dotted params key")
    r.set_defaults(handler=_run_local)

    s = sub.add_parser("submit", help="create a run on a Kubeflow Pipelines cluster")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.params import ParamsError

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ParamsError as exc:
        print(f"python -m pipeline: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
