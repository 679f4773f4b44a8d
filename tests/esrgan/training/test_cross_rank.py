"""Cross-rank batch statistics: 2 gloo ranks with half a batch each give one process's gradients."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from esrgan.losses import ra_discriminator_terms, ra_generator_loss
from esrgan.models import VGGDiscriminator
from esrgan.training.cross_rank import CrossRankBatchNorm2d, convert_batchnorm, cross_rank_mean

pytestmark = pytest.mark.slow  # two spawned ranks: ~15 s

BATCH = 4


def _discriminator() -> nn.Module:
    torch.manual_seed(0)
    return VGGDiscriminator(128, 3, 4).train()


def _batches() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(BATCH, 3, 128, 128, generator=g), torch.rand(BATCH, 3, 128, 128, generator=g)


def _gan_losses(d: nn.Module, real_in: torch.Tensor, fake_in: torch.Tensor, mean: object) -> torch.Tensor:
    real, fake = d(real_in), d(fake_in)
    l_real, l_fake = ra_discriminator_terms(real, fake, mean)  # type: ignore[arg-type]
    return l_real + l_fake + ra_generator_loss(real.detach(), fake, mean)  # type: ignore[arg-type]


def _rank(rank: int, port: int, out: str, cross: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    real, fake = _batches()
    half = slice(rank * BATCH // 2, (rank + 1) * BATCH // 2)
    d = convert_batchnorm(_discriminator()) if cross else _discriminator()
    ddp = nn.parallel.DistributedDataParallel(d)  # averages the parameter gradients, as training does
    loss = _gan_losses(ddp, real[half], fake[half], cross_rank_mean if cross else torch.mean)
    loss.backward()
    if rank == 0:
        torch.save({"grads": [p.grad for p in d.parameters()], "state": d.state_dict()}, out)
    dist.destroy_process_group()


def _two_ranks(tmp_path: Path, cross: bool) -> dict:
    from pipeline.processes import free_port

    out = str(tmp_path / f"rank0_{cross}.pt")
    mp.spawn(_rank, args=(free_port(), out, cross), nprocs=2)
    return torch.load(out, weights_only=True)


def _rel(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max() / x.abs().max()) for x, y in zip(a, b, strict=True))


def test_two_ranks_give_one_processs_gradients_and_running_statistics(tmp_path: Path) -> None:
    d = _discriminator()
    _gan_losses(d, *_batches(), torch.mean).backward()
    one = [p.grad for p in d.parameters()]
    two = _two_ranks(tmp_path, cross=True)
    assert _rel(one, two["grads"]) < 1e-4  # measured 5.6e-6: summation order only
    for key, value in d.state_dict().items():
        assert torch.allclose(value.float(), two["state"][key].float(), atol=1e-6), key
    # Per-rank statistics (plain BatchNorm and batch means) are a different computation: the test can tell.
    assert _rel(one, _two_ranks(tmp_path, cross=False)["grads"]) > 1e-2


def test_outside_a_process_group_both_are_the_plain_operations() -> None:
    x = torch.randn(3, 5, 7, 7)
    plain = nn.BatchNorm2d(5).train()
    cross = convert_batchnorm(nn.Sequential(nn.BatchNorm2d(5))).train()
    assert isinstance(cross[0], CrossRankBatchNorm2d)
    assert torch.equal(plain(x), cross(x)) and torch.equal(plain.running_var, cross[0].running_var)
    assert cross_rank_mean(x) == x.mean()
    assert set(cross.state_dict()) == {f"0.{k}" for k in plain.state_dict()}
