"""The ``esrgan`` command line: a thin adapter over the core library and the pipeline steps.

Every sub-command parses arguments, calls one library or step function, and turns the known
error types into a one-line message and a non-zero exit status. No logic lives here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("esrgan")

#: Exit status for bad input (unreadable model, missing file); 1 means "some items failed".
EXIT_BAD_INPUT = 2

Handler = Callable[[argparse.Namespace], int]


class UserError(Exception):
    """An error caused by the user's input; printed as one line without a traceback."""


def _error(message: str) -> None:
    print(f"esrgan: error: {message}", file=sys.stderr)


def _user_error_types() -> tuple[type[BaseException], ...]:
    from pydantic import ValidationError

    from esrgan.imageio import ImageReadError
    from esrgan.models import CheckpointError

    return (UserError, CheckpointError, ImageReadError, FileNotFoundError, ValidationError)


# --- upscale -----------------------------------------------------------------------------------


def _add_upscale(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upscale", help="upscale image files and folders with a generator")
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders of images")
    p.add_argument("--model", "-m", required=True, help="generator checkpoint (.pth/.safetensors) or models:/ URI")
    p.add_argument("--output", "-o", type=Path, required=True, help="output folder")
    p.add_argument("--tile", type=int, default=0, help="tile edge in input pixels; 0 = whole image (default)")
    p.add_argument("--tile-pad", type=int, default=None, help="context around each tile in input pixels")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument("--suffix", default="_x{scale}", help="appended to each output file name (default _x{scale})")
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
    )


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_upscale]


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
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.handler(args))
    except _user_error_types() as exc:
        _error(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
