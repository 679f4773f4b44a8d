"""``esrgan train psnr|gan``: one training stage of a profile, outside DVC (the library's ``train``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.common import UserError, print_json


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    return print_json(result.to_dict()) if launched_rank() == 0 else 0
