"""The PSNR stage's batch split over CPU threads: same gradients, same losses, where it applies."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from torch import nn

from esrgan.losses import pixel_loss
from esrgan.models import RRDBNet
from esrgan.training import Callbacks, train_psnr
from esrgan.training.loop import memory_format_for
from esrgan.training.thread_shards import ThreadShards, resolve_thread_shards
from tests._training_helpers import make_pairs, tiny_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _rules(**kw: object) -> int:
    args: dict = {"stage": "psnr", "device": CPU, "distributed": False, "deterministic": False}
    args |= {"batch_size": 8, "threads": 2} | kw
    setting = args.pop("setting", "auto")
    return resolve_thread_shards(setting, **args)


def test_auto_is_the_thread_count_capped_at_the_batch() -> None:
    assert _rules() == 2
    assert _rules(threads=16) == 8
    assert _rules(threads=1) == 1
    assert _rules(setting=4) == 4
    assert _rules(setting=1, threads=16) == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"stage": "gan"}, "BatchNorm"),
        ({"device": CUDA}, "not cuda"),
        ({"distributed": True}, "over processes"),
        ({"deterministic": True}, "deterministic"),
    ],
)
def test_no_shards_where_they_would_change_the_result(
    change: dict, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert _rules(**change) == 1
    with caplog.at_level(logging.INFO, logger="esrgan.training.thread_shards"):
        assert _rules(setting=4, **change) == 1
    assert reason in caplog.text and "thread_shards 4 ignored" in caplog.text


def _model() -> RRDBNet:
    torch.manual_seed(0)
    return RRDBNet(num_feat=8, num_block=1, num_grow=4, scale=4)


@pytest.mark.parametrize("batch", [4, 3])  # 3: slices of 2 and 1, weighted by their share
def test_sharded_step_has_the_whole_batch_gradient_and_loss(batch: int) -> None:
    gen = torch.Generator().manual_seed(1)
    lr, hr = torch.rand(batch, 3, 8, 8, generator=gen), torch.rand(batch, 3, 32, 32, generator=gen)
    reference = _model()
    loss = pixel_loss(reference(lr), hr)
    loss.backward()
    expected = {n: p.grad.clone() for n, p in reference.named_parameters()}

    model = _model()
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # keeps the gradients for comparison
    with ThreadShards(2) as shards:
        values = shards.psnr_step(model, lr, hr, frozen)
    assert values["loss_pixel"].item() == pytest.approx(loss.item(), rel=1e-6)
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_sharded_steps_repeat_bit_for_bit() -> None:
    gen = torch.Generator().manual_seed(2)
    lr, hr = torch.rand(4, 3, 8, 8, generator=gen), torch.rand(4, 3, 32, 32, generator=gen)
    grads = []
    with ThreadShards(2) as shards:
        for _ in range(5):
            model = _model()
            shards.psnr_step(model, lr, hr, torch.optim.SGD(model.parameters(), lr=0.0))
            grads.append([p.grad for p in model.parameters()])
    for later in grads[1:]:
        assert all(torch.equal(a, b) for a, b in zip(grads[0], later, strict=True))


def test_worker_threads_have_their_own_thread_count() -> None:
    before = torch.get_num_threads()
    seen: list[tuple[str, int]] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((threading.current_thread().name, torch.get_num_threads()))
            return nn.functional.interpolate(x, scale_factor=4.0) * self.w

        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

    probe = Probe()
    with ThreadShards(2, threads_each=1) as shards:
        shards.psnr_step(probe, torch.rand(2, 3, 4, 4), torch.rand(2, 3, 16, 16), torch.optim.SGD(probe.parameters()))
    assert sorted(n for _, n in seen) == [1, 1]
    assert all(name.startswith("esrgan-shard") for name, _ in seen)
    assert torch.get_num_threads() == before


def test_a_failing_slice_raises_in_the_caller() -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("broken forward")

    with ThreadShards(2) as shards, pytest.raises(RuntimeError, match="broken forward"):
        shards.psnr_step(
            Broken(), torch.rand(2, 3, 4, 4), torch.rand(2, 3, 16, 16), torch.optim.SGD([nn.Parameter(torch.ones(1))])
        )


def test_memory_format_auto_is_nhwc_under_bf16_on_cpu_only() -> None:
    assert memory_format_for("auto", CPU, torch.bfloat16) == torch.channels_last
    assert memory_format_for("auto", CPU, None) == torch.contiguous_format
    assert memory_format_for("auto", CUDA, torch.bfloat16) == torch.contiguous_format
    assert memory_format_for(True, CPU, None) == torch.channels_last
    assert memory_format_for(False, CPU, torch.bfloat16) == torch.contiguous_format


class _Losses(Callbacks):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.losses.append(metrics["loss_pixel"])


def test_psnr_stage_trains_sharded_on_the_same_batches(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    hr, lr = make_pairs(tmp_path / "train", 3, 64)
    threads = torch.get_num_threads()
    runs = {}
    for shards in (1, 2):
        cfg = tiny_config(
            pretrain_psnr={"iterations": 3, "log_every": 1, "val_every": 0, "checkpoint_every": 3},
            runtime={"device": "cpu", "deterministic": False, "seed": 0, "thread_shards": shards},
        )
        runs[shards] = _Losses()
        with caplog.at_level(logging.INFO, logger="esrgan.training.loop"):
            train_psnr(cfg, hr, lr, None, None, tmp_path / f"run{shards}", callbacks=runs[shards])
    assert "each batch split over 2 threads" in caplog.text
    # Same start, same batches: the first loss is the same number; later ones follow closely.
    assert runs[2].losses[0] == pytest.approx(runs[1].losses[0], rel=1e-5)
    assert runs[2].losses == pytest.approx(runs[1].losses, rel=1e-2)
    assert torch.get_num_threads() == threads
