"""Training stages on every GPU of a machine: ``runtime.processes`` ranks under ``torchrun``.

``esrgan stage pretrain_psnr|finetune_gan``, ``esrgan train`` and the KFP training components
call :func:`launch` when :func:`resolve_processes` says more than one process: it runs exactly
``torchrun --standalone --nproc_per_node N`` (torch's own launcher, in this process) on the same
command, and each rank runs it with ``RANK``/``WORLD_SIZE`` set (:func:`under_torchrun`), so the
command does not launch again. The training library splits the global batch over the ranks;
only rank 0 writes files, MLflow and DVC outputs (``pipeline.steps.training``).

Failures come back as one line, not torchrun's report: a rank killed (``kill -9``, the OOM
killer) stops the others within seconds (gloo sees the closed connection, torchrun stops the
group) and :func:`launch` names the rank and signal; a SIGTERM to this process reaches every
rank (torchrun forwards it), the ranks agree on the iteration, rank 0 writes one checkpoint and
the stage exits with ``PREEMPTED_EXIT_CODE``. A rerun resumes from the newest checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeline.errors import ParamsError

if TYPE_CHECKING:
    from pipeline.params import PipelineParams

#: A rank whose peer died or hung exits with this status, silently: the launcher reports the cause.
EXIT_LOST_PEER = 75
#: Set by torchrun in every rank it starts.
_TORCHRUN_ENV = ("TORCHELASTIC_RUN_ID", "LOCAL_RANK")
#: What gloo says when another rank's process is gone, or a collective waited past its timeout.
_PEER_MESSAGES = ("Connection closed by peer", "Connection reset by peer", "Timed out waiting", "Broken pipe")


def under_torchrun() -> bool:
    """True in a process torchrun started (a rank): it must train, not launch again."""
    return all(name in os.environ for name in _TORCHRUN_ENV)


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_processes(setting: int | str, device: str, gpus: int | None = None) -> int:
    """How many ranks ``runtime.processes`` means here.

    ``auto``: one per visible GPU when ``device`` may use CUDA, else 1. A number is taken as is
    (gloo processes on CPU) but may not exceed the visible GPUs on ``device: cuda``.

    Raises:
        ParamsError: more processes than GPUs on CUDA.
    """
    gpus = visible_gpus() if gpus is None else gpus
    if setting == "auto":
        return gpus if device != "cpu" and gpus > 0 else 1
    count = int(setting)
    if device == "cuda" and count > gpus:
        raise ParamsError(f"runtime.processes is {count} but {gpus} GPU(s) are visible (runtime.device cuda)")
    return count


def stage_processes(params: PipelineParams) -> int:
    """Ranks for a training stage of ``params`` on this machine.

    Raises:
        ParamsError: more processes than GPUs, or a global batch that does not split evenly.
    """
    from pipeline.params import batch_split_problems, params_document

    count = resolve_processes(params.runtime.processes, params.runtime.device)
    problems = batch_split_problems(params_document(params), count)
    if problems:
        raise ParamsError(problems)
    return count


def lost_peer(exc: BaseException) -> bool:
    """Whether ``exc`` in a rank means another rank died or hung (the cause is reported elsewhere)."""
    if not under_torchrun():
        return False
    import torch.distributed as dist

    return isinstance(exc, dist.DistError) or (
        isinstance(exc, RuntimeError) and any(m in str(exc) for m in _PEER_MESSAGES)
    )


def _signal_name(exitcode: int) -> str:
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def launch(command: Sequence[str], processes: int, what: str = "training") -> int:
    """Run ``python -m <command>`` as ``processes`` ranks under ``torchrun --standalone``; the exit status.

    0: every rank succeeded. ``PREEMPTED_EXIT_CODE``: SIGTERM; each rank stopped at the same
    iteration and rank 0 wrote a checkpoint. 130: interrupted. 2: a user error, which rank 0
    printed. Otherwise 1 and one ``esrgan: error:`` line naming the rank that failed first.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from esrgan.training import PREEMPTED_EXIT_CODE
    from pipeline.errors import EXIT_USER_ERROR

    # torchrun's own log lines (rendezvous, "closing signal") are noise here; errors are summarised.
    # Each of its modules sets its logger's level, so each is quietened.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic") or name == "torch.distributed.run":
            logging.getLogger(name).setLevel(logging.CRITICAL)
    if "OMP_NUM_THREADS" not in os.environ:
        # torchrun would set 1 (with a warning); share the cores instead.
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
    args = parse_args(["--standalone", "--nproc-per-node", str(processes), "-m", *command])
    try:
        run(args)
    except SignalException as exc:  # this process got SIGTERM/SIGINT: torchrun passed it to the ranks
        return PREEMPTED_EXIT_CODE if exc.sigval == signal.SIGTERM else 130
    except ChildFailedError as exc:
        failures = sorted(exc.failures.items(), key=lambda item: item[1].timestamp)
        causes = [(rank, f) for rank, f in failures if f.exitcode != EXIT_LOST_PEER] or failures
        codes = {f.exitcode for _, f in causes}
        if codes <= {EXIT_USER_ERROR, PREEMPTED_EXIT_CODE, 130}:
            return max(codes)  # rank 0 printed why, in its own words
        rank, first = causes[0]
        if first.exitcode == EXIT_LOST_PEER:
            how = "timed out waiting for the other ranks (ESRGAN_COLLECTIVE_TIMEOUT_S)"
        elif first.exitcode < 0:
            how = f"was killed by {_signal_name(first.exitcode)}"
        else:
            how = f"exited with status {first.exitcode}"
        print(
            f"esrgan: error: {what}: rank {rank} of {processes} {how}; all ranks stopped "
            "(run it again to resume from the last checkpoint)",
            file=sys.stderr,
        )
        return 1
    return 0
