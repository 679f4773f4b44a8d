"""runtime.amp: what each value means on CPU and CUDA, and that the loop trains under it."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch

from esrgan.models import load_generator
from esrgan.training import loop as training_loop
from esrgan.training.config import RuntimeConfig
from esrgan.training.loop import amp_dtype_for, train_gan, train_psnr
from tests._training_helpers import make_pairs, tiny_config

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_amp_values_on_cpu(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("esrgan.engines.loader.native_bf16", lambda: native)
    assert amp_dtype_for("none", CPU) is None
    assert amp_dtype_for("fp16", CPU) is None  # no fp16 training path on CPUs: fp32
    assert amp_dtype_for("bf16", CPU) is torch.bfloat16  # asked for: honoured, even emulated
    # auto: bf16 only where the CPU computes it natively (elsewhere it is slower than fp32)
    assert amp_dtype_for("auto", CPU) is (torch.bfloat16 if native else None)


def test_runtime_config_accepts_auto() -> None:
    assert RuntimeConfig(amp="auto").amp == "auto"
    with pytest.raises(ValueError):
        RuntimeConfig(amp="int8")  # type: ignore[arg-type]


@pytest.mark.parametrize("stage", ["psnr", "gan"])
def test_loop_trains_under_cpu_bf16_autocast(stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    step_name = "psnr_step" if stage == "psnr" else "generator_step"
    real = getattr(training_loop, step_name)

    def spy(*args: Any) -> Any:
        seen.append(inspect.signature(real).bind(*args).arguments["amp_dtype"])
        return real(*args)

    monkeypatch.setattr(training_loop, step_name, spy)
    hr, lr = make_pairs(tmp_path / "data", 2, 128)
    cfg = tiny_config(runtime={"amp": "bf16"})
    if stage == "psnr":
        result = train_psnr(cfg, hr, lr, None, None, tmp_path / "run")
    else:
        init = train_psnr(tiny_config(pretrain_psnr={"iterations": 1}), hr, lr, None, None, tmp_path / "init")
        result = train_gan(cfg, hr, lr, None, None, tmp_path / "run", init_generator=init.final_generator_path)
    assert seen and all(dtype is torch.bfloat16 for dtype in seen)
    losses = {k: v for k, v in result.metrics.items() if k.startswith("loss")}
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    # weights stay fp32: autocast computes in bf16, the parameters and the files are fp32
    assert all(p.dtype == torch.float32 for p in load_generator(result.generator_path).parameters())
