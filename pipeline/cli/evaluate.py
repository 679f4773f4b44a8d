"""``esrgan evaluate``: PSNR/SSIM-Y, NIQE and LPIPS of a generator and bicubic on a folder of HR images."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.common import print_json


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    from pipeline.cli.upscale import load_model_for_inference

    model = load_model_for_inference(args.model, "cpu") if args.model else None
    metrics = tuple(args.metrics.split(",")) if args.metrics else METRICS
    report = evaluate_folder(model, args.data, scale=args.scale, tile=args.tile, metrics=metrics)
    if args.output:
        write_report(report, args.output)
        summary = {"model": report["model"]["mean"], "bicubic": report["bicubic"]["mean"]}
        return print_json(summary)
    return print_json(report)
