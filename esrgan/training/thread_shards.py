"""Data parallelism over CPU threads for the PSNR stage: each thread trains one slice of the batch.

On a few CPU cores, torch's intra-op threads split every small convolution between them and wait
for each other at the end of each one; the demo's PSNR batch (8 patches of 24x24 LR) is too small
to keep two cores busy that way. Giving each thread its own slice of the batch, with one intra-op
thread each, keeps them busy: on the 2-core demo CPU a PSNR iteration took 20-27% less CPU time
and 15-20% less wall time (BENCHMARKS.md, "Main job").

Each slice's loss is weighted by its share of the batch and its gradients are summed in slice
order, so the one optimiser step sees the whole batch's mean gradient, as DDP would (only float
rounding differs from one thread), and the same run gives the same weights again.
``runtime.deterministic`` still uses one shard: it promises the one-process computation.

Only for stages without batch statistics: the GAN stage's discriminator has BatchNorm, whose
statistics need the whole batch in one pass.
"""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Literal

import torch
from torch import nn
from torch.optim import Optimizer

from esrgan.losses import pixel_loss
from esrgan.training.updates import autocast

log = logging.getLogger(__name__)


def resolve_thread_shards(
    setting: Literal["auto"] | int,
    *,
    stage: str,
    device: torch.device,
    distributed: bool,
    deterministic: bool,
    batch_size: int,
    threads: int,
) -> int:
    """How many threads share a batch: ``runtime.thread_shards`` on this run (1 means none).

    ``auto`` is the torch thread count (at most the batch size) for the PSNR stage on CPU, one
    process, non-deterministic; 1 everywhere else. A number is honoured where sharding is
    possible (capped at the batch size) and ignored, with a log line, where it is not.
    """
    reasons = []
    if stage != "psnr":
        reasons.append("the GAN stage's discriminator needs whole-batch BatchNorm statistics")
    if device.type != "cpu":
        reasons.append(f"it is for CPU threads, not {device.type}")
    if distributed:
        reasons.append("the batch is already split over processes")
    if deterministic:
        reasons.append("runtime.deterministic needs one order of gradient sums")
    wanted = threads if setting == "auto" else setting
    shards = max(1, min(wanted, batch_size))
    if reasons:
        if setting != "auto" and setting > 1:
            log.info("runtime.thread_shards %d ignored: %s", setting, "; ".join(reasons))
        return 1
    return shards


class ThreadShards:
    """A pool of ``shards`` threads, each running torch with ``threads_each`` intra-op threads.

    Use as a context manager (the threads stop on exit), or call :meth:`close`.
    """

    def __init__(self, shards: int, threads_each: int = 1) -> None:
        if shards < 2:
            raise ValueError(f"ThreadShards needs at least 2 shards, got {shards}")
        self.shards = shards
        # Each worker sets its own intra-op thread count once: torch keeps it per OpenMP thread,
        # so the caller's count (validation, EMA, the optimiser step) is left as it was.
        self._pool = concurrent.futures.ThreadPoolExecutor(
            shards, thread_name_prefix="esrgan-shard", initializer=torch.set_num_threads, initargs=(threads_each,)
        )

    def __enter__(self) -> ThreadShards:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker threads (after the running slices finish)."""
        self._pool.shutdown(wait=True)

    def psnr_step(
        self,
        generator: nn.Module,
        lr: torch.Tensor,
        hr: torch.Tensor,
        optimizer: Optimizer,
        amp_dtype: torch.dtype | None = None,
    ) -> dict[str, torch.Tensor]:
        """:func:`esrgan.training.updates.psnr_step` with the batch split over the threads."""
        optimizer.zero_grad(set_to_none=True)
        total = lr.shape[0]
        params = [p for p in generator.parameters() if p.requires_grad]

        def slice_grads(lr_part: torch.Tensor, hr_part: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
            # autocast is per thread: each worker enters its own.
            with autocast(lr_part.device, amp_dtype):
                loss = pixel_loss(generator(lr_part), hr_part) * (lr_part.shape[0] / total)
            return loss.detach(), list(torch.autograd.grad(loss, params, allow_unused=True))

        parts = zip(torch.tensor_split(lr, self.shards), torch.tensor_split(hr, self.shards), strict=True)
        futures = [self._pool.submit(slice_grads, a, b) for a, b in parts if a.shape[0]]
        # Wait for every slice before raising, so no thread is still running.
        concurrent.futures.wait(futures)
        results = [f.result() for f in futures]
        # Summed here in slice order, not as the threads finish: the same run gives the same weights.
        for i, p in enumerate(params):
            grads = [grad for _, per_slice in results if (grad := per_slice[i]) is not None]
            p.grad = torch.stack(grads).sum(0) if len(grads) > 1 else (grads[0] if grads else None)
        optimizer.step()
        return {"loss_pixel": torch.stack([loss for loss, _ in results]).sum()}
