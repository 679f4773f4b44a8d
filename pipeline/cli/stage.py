"""``esrgan stage NAME``: the commands ``dvc.yaml`` runs, one per pipeline step.

Paths are explicit arguments (so ``dvc.yaml`` shows the data flow); parameters come from
``params.yaml``. Each command calls exactly one function of :mod:`pipeline.steps`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.cli.common import print_json
from pipeline.errors import ParamsError

if TYPE_CHECKING:
    from pipeline.steps.context import StepContext


def _ctx(args: argparse.Namespace) -> StepContext:
    # Imported here: it loads MLflow (seconds), which the interpolate stages never use.
    from pipeline.steps.context import StepContext

    return StepContext.load(Path.cwd(), args.params) if _rank() == 0 else _untracked_ctx(Path.cwd() / args.params)


def _rank() -> int:
    import os

    from pipeline.torchrun import under_torchrun

    return int(os.environ.get("RANK", "0")) if under_torchrun() else 0


def _untracked_ctx(params_file: Path) -> StepContext:
    """A training rank other than 0: the parameters without MLflow (only rank 0 tracks; N ranks
    creating one SQLite store at once would race)."""
    from pipeline.params import load_params
    from pipeline.steps.context import StepContext

    return StepContext.untracked(Path.cwd(), load_params(params_file))


def _claim_output_folder(path: Path) -> None:
    """Mark the folder of a sweep's per-alpha files as esrgan's when esrgan creates it (or finds it
    empty), so that ``register`` may later prune the files of alphas no longer swept. A folder
    that already holds other files is written into but never claimed, so never pruned."""
    import contextlib

    from esrgan.owned_folders import NotOwnedError, claim

    with contextlib.suppress(NotOwnedError):
        claim(path.parent, "output folder")


def _extract(args: argparse.Namespace) -> int:
    from pipeline.steps.extract_patches import extract_patches_step

    return print_json(extract_patches_step(_ctx(args), args.data, args.out, args.metrics))


def _resolve_init(args: argparse.Namespace) -> int:
    from pipeline.steps.resolve_init import resolve_init_step

    return print_json(resolve_init_step(_ctx(args), args.out))


def _ranks(args: argparse.Namespace) -> int | None:
    """``runtime.processes`` ranks for a training stage: the launch's exit status when this process
    launched them under torchrun, None when it trains itself (one process, or a rank)."""
    from pipeline.params import load_params
    from pipeline.torchrun import launch, stage_processes, under_torchrun

    if under_torchrun():
        return None
    count = stage_processes(load_params(Path.cwd() / args.params))  # fails fast, before any rank starts
    return launch(["pipeline.cli", *args.argv], count, f"stage {args.stage}") if count > 1 else None


def _print_rank0(data: dict[str, Any]) -> int:
    return print_json(data) if _rank() == 0 else 0


def _psnr(args: argparse.Namespace) -> int:
    from pipeline.steps.pretrain_psnr import pretrain_psnr_step

    if (status := _ranks(args)) is not None:
        return status
    ctx = _ctx(args)
    return _print_rank0(
        pretrain_psnr_step(ctx, args.patches, args.run_dir, args.model_out, args.metrics, init_dir=args.init_dir)
    )


def _gan(args: argparse.Namespace) -> int:
    from pipeline.steps.finetune_gan import finetune_gan_step

    if (status := _ranks(args)) is not None:
        return status
    ctx = _ctx(args)
    return _print_rank0(
        finetune_gan_step(
            ctx, args.patches, args.init, args.run_dir, args.model_out, args.metrics, init_dir=args.init_dir
        )
    )


def _interpolate(args: argparse.Namespace) -> int:
    from pipeline.params import load_params
    from pipeline.steps.interpolate import interpolate_step

    # No MLflow here, but the same rule as every stage: the whole params.yaml is valid first.
    alphas = load_params(Path.cwd() / args.params).interpolate.alphas
    if not any(abs(args.alpha - a) < 1e-9 for a in alphas):
        raise ParamsError(f"--alpha {args.alpha:g} is not in {args.params}'s interpolate.alphas {alphas}")
    _claim_output_folder(args.out)
    return print_json({"path": str(interpolate_step(args.psnr, args.gan, args.alpha, args.out))})


def _evaluate(args: argparse.Namespace) -> int:
    from pipeline.steps.evaluate import evaluate_step

    ctx = _ctx(args)
    _claim_output_folder(args.report)
    return print_json(evaluate_step(ctx, args.model, args.alpha, args.val, args.report, args.metrics, args.baseline))


def _evaluate_bicubic(args: argparse.Namespace) -> int:
    from pipeline.steps.evaluate_bicubic import evaluate_bicubic_step

    return print_json(evaluate_bicubic_step(_ctx(args), args.val, args.report))


def _register(args: argparse.Namespace) -> int:
    from pipeline.steps.register import register_step, sweep_files

    ctx = _ctx(args)
    reports, models = sweep_files(ctx, args.reports, args.models)
    return print_json(register_step(ctx, reports, models, args.summary, args.plot_csv, args.plot_png, args.registered))


def _paths(parser: argparse.ArgumentParser, *options: str) -> argparse.ArgumentParser:
    """Add each of ``options`` as a required path argument (every stage's files are explicit)."""
    for option in options:
        parser.add_argument(option, type=Path, required=True)
    return parser


def add_stage_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``esrgan stage <name>`` sub-commands."""
    p = sub.add_parser("stage", help="run one pipeline stage (what dvc.yaml calls)")
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    st = p.add_subparsers(dest="stage", required=True, metavar="STAGE")

    s = _paths(st.add_parser("extract_patches"), "--data", "--out", "--metrics")
    s.set_defaults(handler=_extract)

    _paths(st.add_parser("resolve_init"), "--out").set_defaults(handler=_resolve_init)
    init_help = "the resolve_init stage's folder for this stage (default: resolve the init sources here)"
    s = _paths(st.add_parser("pretrain_psnr"), "--patches", "--run-dir", "--model-out", "--metrics")
    s.add_argument("--init-dir", type=Path, help=init_help)
    s.set_defaults(handler=_psnr)
    s = _paths(st.add_parser("finetune_gan"), "--patches", "--init", "--run-dir", "--model-out", "--metrics")
    s.add_argument("--init-dir", type=Path, help=init_help)
    s.set_defaults(handler=_gan)

    s = _paths(st.add_parser("interpolate"), "--psnr", "--gan")
    s.add_argument("--alpha", type=float, required=True)
    _paths(s, "--out").set_defaults(handler=_interpolate)

    s = _paths(st.add_parser("evaluate"), "--model")
    s.add_argument("--alpha", type=float, required=True)
    _paths(s, "--val", "--report", "--metrics").set_defaults(handler=_evaluate)
    s.add_argument("--baseline", type=Path, help="bicubic report of 'stage evaluate_bicubic' to reuse")
    _paths(st.add_parser("evaluate_bicubic"), "--val", "--report").set_defaults(handler=_evaluate_bicubic)

    s = st.add_parser("register")
    s.add_argument("--reports", type=Path, required=True, help="folder of alpha_<a>.json reports")
    s.add_argument("--models", type=Path, required=True, help="folder of alpha_<a>.pth generators")
    _paths(s, "--summary", "--plot-csv", "--plot-png", "--registered")
    s.set_defaults(handler=_register)
