"""Batch statistics over every rank's share of the batch, on any backend (gloo on CPU included).

Data parallelism splits a global batch of ``B`` into ``N`` shares. Losses that are plain means
over samples survive the split (DDP averages the ranks' gradients), but two parts of the GAN stage
look at the batch as a whole: the relativistic average discriminator compares each logit with the
*batch mean* of the other side's logits, and the discriminator's BatchNorm normalises with *batch
statistics*. Computed per rank, both would make N ranks a different computation from one process.
:func:`cross_rank_mean` and :class:`CrossRankBatchNorm2d` compute them over the global batch with
differentiable all-reduces (``torch.distributed.nn``), so N ranks train the same model as one
process with the same global batch, to float rounding. Outside a process group both reduce to the
plain single-process operations, bit for bit.

PyTorch's ``nn.SyncBatchNorm`` does the same for BatchNorm but runs on CUDA only; on CUDA the
loop keeps using it (its fused kernels are faster), and this module covers CPU ranks.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over ranks (the backward pass sums the ranks' gradients)."""
    with warnings.catch_warnings():
        # torch 2.14 points to torch.distributed._functional_collectives, a private module whose
        # autograd support is not documented; this public one still works and is tested here.
        warnings.simplefilter("ignore", FutureWarning)
        out: torch.Tensor = dist_fn.all_reduce(x)
    return out


def cross_rank_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over every rank's elements (``x.mean()`` in a single process).

    Differentiable: each rank's elements receive the gradient of every rank's use of the mean.
    Ranks may hold different numbers of elements.
    """
    if _world() == 1:
        return x.mean()
    local = torch.stack([x.float().sum(), x.new_tensor(x.numel(), dtype=torch.float32)])
    total = _all_reduce_sum(local)
    return (total[0] / total[1]).to(x.dtype)


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics cover the global batch of all ranks.

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm2d`` (checkpoints are
    interchangeable). Statistics are two-pass (mean, then the mean squared deviation) in float32,
    as one process computes them; running statistics get the unbiased variance of the global batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or _world() == 1:
            return super().forward(x)
        xf = x.float()
        channels = xf.shape[1]
        count = xf.new_tensor([xf.numel() // channels], dtype=torch.float32)
        sums = _all_reduce_sum(torch.cat([xf.sum(dim=(0, 2, 3)), count]))
        n = sums[-1]
        mean = sums[:channels] / n
        centred = xf - mean.view(1, -1, 1, 1)
        squares = _all_reduce_sum(centred.pow(2).sum(dim=(0, 2, 3)))
        var = squares / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                tracked = self.num_batches_tracked
                if tracked is not None:
                    tracked.add_(1)
                momentum: float = (
                    self.momentum if self.momentum is not None else 1.0 / float(tracked) if tracked is not None else 0.0
                )
                unbiased = var.detach() * (n / (n - 1)).clamp(min=0)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        y: torch.Tensor = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        # Under autocast, batch_norm runs and returns float32; outside it, the input's dtype.
        return y if torch.is_autocast_enabled(x.device.type) else y.to(x.dtype)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.BatchNorm2d`` replaced by :class:`CrossRankBatchNorm2d` (same state)."""
    if type(module) is nn.BatchNorm2d:
        converted = CrossRankBatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        new = convert_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


__all__ = ["CrossRankBatchNorm2d", "convert_batchnorm", "cross_rank_mean"]
