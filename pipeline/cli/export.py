"""``esrgan export onnx``: a generator as an ONNX file with dynamic height and width."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.common import UserError, print_json, tracking_uri


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    from pipeline.cli.upscale import load_model_for_inference

    output = _export_output(args.output, args.model, args.overwrite)

    if args.model.startswith(("models:/", "runs:/")):
        import mlflow

        # MLflow's errors (unknown model, alias, version, run) become one line in the loader.
        mlflow.set_tracking_uri(tracking_uri(args.tracking_uri))
    model = load_model_for_inference(args.model, "cpu")
    start = time.perf_counter()
    path = export_onnx(model, output, opset=args.opset)
    return print_json(
        {
            "path": str(path),
            "bytes": path.stat().st_size,
            "seconds": round(time.perf_counter() - start, 2),
            "architecture": model.config,
        }
    )
