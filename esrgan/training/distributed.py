"""Multi-GPU / multi-node data parallelism through ``torchrun`` (``env://`` rendezvous).

``torchrun --nproc_per_node N -m <your entry point>`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them. The
backend is NCCL on CUDA and gloo on CPU (which is what the tests use). Only rank 0 logs,
validates and writes files; every rank runs the same number of iterations.

Collectives time out after :data:`COLLECTIVE_TIMEOUT_ENV` seconds (default
:data:`DEFAULT_COLLECTIVE_TIMEOUT_S`): a rank that hangs fails the others with an error instead of
blocking them forever. A rank that *dies* is noticed sooner: gloo sees the closed connection at
the next collective, and torchrun stops the remaining ranks. The timeout must exceed the longest
stretch rank 0 works alone (validation, writing a checkpoint) while the others wait at a barrier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from esrgan.devices import DeviceError, resolve_device

#: Environment variable: seconds a collective (all-reduce, barrier) may wait for the other ranks.
COLLECTIVE_TIMEOUT_ENV = "ESRGAN_COLLECTIVE_TIMEOUT_S"
DEFAULT_COLLECTIVE_TIMEOUT_S = 900.0


def launched_rank() -> int:
    """This process's global rank as torchrun set it (0 when not launched by torchrun).

    Readable before the process group exists, so a caller can decide what only rank 0 does
    (tracking, resetting a run folder) before :func:`init_distributed` joins the group.
    """
    return int(os.environ.get("RANK", "0"))


def collective_timeout() -> timedelta:
    """:data:`COLLECTIVE_TIMEOUT_ENV` as a timedelta (a positive number of seconds)."""
    raw = os.environ.get(COLLECTIVE_TIMEOUT_ENV, "")
    try:
        seconds = float(raw) if raw else DEFAULT_COLLECTIVE_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"{COLLECTIVE_TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1), else single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    try:
        device = resolve_device(device_preference, local_rank)
    except DeviceError as exc:
        raise DeviceError(f"runtime.device {exc}") from None
    if world_size <= 1:
        return DistContext(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://", timeout=collective_timeout())
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=device)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any (so all ranks stop at the same iteration)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_ranks(ctx: DistContext, values: dict[str, float]) -> dict[str, float]:
    """Average logged scalars over ranks (one all-reduce)."""
    if not ctx.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return dict(zip(keys, (t / ctx.world_size).tolist(), strict=True))
