"""The ``esrgan`` command line: a thin adapter over the core library and the pipeline steps.

Every sub-command parses arguments, calls library or step functions, and turns the known error
types into a one-line message and a non-zero exit status. What else lives here is glue that no
stage's output depends on (which is why ``tests/test_dvc_deps.py`` treats this package as an
adapter): defaults (the tracking URI, resource limits as twice the requests), argument checks,
and the order of a few registry calls (``registry promote`` moves the alias, then tags the version).
Each command group is one module of this package (``esrgan stage`` in :mod:`pipeline.cli.stage`...);
this one builds the parser from them and owns the exit statuses.

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

from pipeline.cli import data, deploy, evaluate, export, interpolate, main_job, registry, train, upscale
from pipeline.cli.kfp import add_kfp_parsers
from pipeline.cli.stage import add_stage_parsers
from pipeline.errors import EXIT_USER_ERROR, PipelineError

log = logging.getLogger("esrgan")


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


COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    upscale.add_parser,
    data.add_parser,
    evaluate.add_parser,
    train.add_parser,
    interpolate.add_parser,
    add_stage_parsers,
    add_kfp_parsers,
    main_job.add_parser,
    registry.add_parser,
    export.add_parser,
    deploy.add_parser,
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
