"""The ``esrgan`` command line, one module per command group; :mod:`pipeline.cli.app` builds the
parser and maps errors to exit statuses. ``python -m pipeline.cli`` runs it (as torchrun ranks do)."""

from pipeline.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
