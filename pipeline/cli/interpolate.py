"""``esrgan interpolate``: network interpolation between the PSNR and GAN generators."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.common import UserError, print_json


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    return print_json([str(p) for p in interpolate_sweep(args.psnr, args.gan, alphas, args.out)])
