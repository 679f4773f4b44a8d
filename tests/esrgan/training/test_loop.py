"""End-to-end training on tiny models: outputs, callbacks, exact resume, SIGTERM preemption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from esrgan.models import load_generator
from esrgan.training import PREEMPTED_EXIT_CODE, Callbacks, TrainResult, load_checkpoint, train_gan, train_psnr
from esrgan.training.config import STAGE_SECTIONS
from tests._training_helpers import make_pairs, tiny_config

pytestmark = pytest.mark.filterwarnings("ignore:.*spandrel-based tools:UserWarning")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    hr, lr = make_pairs(root / "train", 3, 128)
    vhr, vlr = make_pairs(root / "val", 2, 48, seed=1)
    return {"hr": hr, "lr": lr, "val_hr": vhr, "val_lr": vlr}


class Recorder(Callbacks):
    def __init__(self, crash_at: int | None = None) -> None:
        self.logs: list[tuple[int, dict]] = []
        self.validations: list[tuple[int, dict, list]] = []
        self.checkpoints: list[int] = []
        self.crash_at = crash_at

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.logs.append((step, dict(metrics)))

    def on_validation(self, step: int, metrics: Mapping[str, float], image_paths: Sequence[Path]) -> None:
        self.validations.append((step, dict(metrics), list(image_paths)))

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.checkpoints.append(step)
        if step == self.crash_at:
            raise KeyboardInterrupt("simulated kill")


def _run(stage: str, cfg: dict, data: dict[str, Path], out: Path, **kw: Any) -> TrainResult:
    args = (cfg, data["hr"], data["lr"], data["val_hr"], data["val_lr"], out)
    return train_psnr(*args, **kw) if stage == "psnr" else train_gan(*args, **kw)


def test_psnr_stage_outputs_logs_and_validation(data: dict[str, Path], tmp_path: Path) -> None:
    rec = Recorder()
    result = _run("psnr", tiny_config(), data, tmp_path, callbacks=rec)
    assert [s for s, _ in rec.logs] == [2, 4, 6]
    assert {"loss_pixel", "lr", "it_per_s"} <= set(rec.logs[0][1])
    assert [m["lr"] for _, m in rec.logs] == [1e-3, 1e-3, 5e-4]  # milestone at 4
    assert [s for s, _, _ in rec.validations] == [3, 6]
    _, metrics, images = rec.validations[-1]
    assert set(metrics) == {"psnr_y", "psnr_y_bicubic"} and len(images) == 1 and images[0].is_file()
    assert rec.checkpoints == [3, 6]
    assert result.iterations == 6 and result.resumed_from == 0 and result.metrics["psnr_y"] == metrics["psnr_y"]
    assert result.final_generator_path == result.generator_path == tmp_path.resolve() / "generator.pth"
    model = load_generator(result.generator_path)
    assert model.config["num_feat"] == 8
    saved = json.loads((tmp_path / "train_result.json").read_text())
    assert saved["iterations"] == 6
    # a training checkpoint is itself a loadable generator
    assert torch.equal(load_generator(result.checkpoint_path).conv_first.weight, model.conv_first.weight)


def _final_state(out: Path) -> dict:
    from esrgan.training import latest_checkpoint

    return load_checkpoint(latest_checkpoint(out))


def _assert_same_tensors(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"tensor differs at {path}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_tensors(x, y, f"{path}[{i}]")


@pytest.mark.parametrize("stage", ["psnr", "gan"])
def test_kill_and_resume_gives_exactly_the_same_weights(stage: str, data: dict[str, Path], tmp_path: Path) -> None:
    cfg = tiny_config(
        pretrain_psnr={"iterations": 6, "checkpoint_every": 3, "val_every": 0, "ema": {"enabled": True, "decay": 0.9}},
        finetune_gan={"iterations": 4, "checkpoint_every": 2, "ema": {"enabled": True, "decay": 0.9}},
    )
    init = None
    if stage == "gan":
        init = _run(
            "psnr", tiny_config(pretrain_psnr={"iterations": 2, "val_every": 0}), data, tmp_path / "init"
        ).generator_path
    kw = {"init_generator": init} if init else {}
    half = cfg[STAGE_SECTIONS[stage]]["checkpoint_every"]
    straight = _run(stage, cfg, data, tmp_path / "straight", **kw)

    with pytest.raises(KeyboardInterrupt):
        _run(stage, cfg, data, tmp_path / "killed", callbacks=Recorder(crash_at=half), **kw)
    resumed = _run(stage, cfg, data, tmp_path / "killed", resume=True, **kw)
    assert resumed.resumed_from == half

    a, b = _final_state(tmp_path / "straight"), _final_state(tmp_path / "killed")
    for key in ("generator", "generator_ema", "optimizer_g", "discriminator", "optimizer_d"):
        if key in a:
            _assert_same_tensors(a[key], b[key], key)
    assert a["iteration"] == b["iteration"] == cfg[STAGE_SECTIONS[stage]]["iterations"]
    assert torch.equal(
        load_generator(straight.ema_generator_path).conv_last.weight,
        load_generator(resumed.ema_generator_path).conv_last.weight,
    )
    if stage == "gan":
        assert straight.backbone["name"] == "random" and straight.discriminator_path.is_file()


_PREEMPT_SCRIPT = """
import sys, time
from esrgan.training import Callbacks, TrainingPreempted, PREEMPTED_EXIT_CODE, train_psnr
sys.path.insert(0, {tests!r})
from tests._training_helpers import tiny_config

class Slow(Callbacks):
    def on_log(self, step, metrics):
        print("STEP", step, flush=True)
        time.sleep(0.2)

cfg = tiny_config(pretrain_psnr={{"iterations": 100000, "log_every": 1, "val_every": 0, "checkpoint_every": 100000}})
try:
    train_psnr(cfg, {hr!r}, {lr!r}, None, None, {out!r}, callbacks=Slow())
except TrainingPreempted as exc:
    print("PREEMPTED", exc.step, exc.checkpoint, flush=True)
    sys.exit(PREEMPTED_EXIT_CODE)
"""


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    script = _PREEMPT_SCRIPT.format(
        tests=str(Path(__file__).parent), hr=str(data["hr"]), lr=str(data["lr"]), out=str(out)
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until training runs
        if line.startswith("STEP 2") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == PREEMPTED_EXIT_CODE, stderr[-2000:]
    line = next(s for s in stdout.splitlines() if s.startswith("PREEMPTED"))
    step = int(line.split()[1])
    state = load_checkpoint(out / "checkpoints" / f"iter_{step:08d}.pth")
    assert state["iteration"] == step >= 2
    # and it resumes from there
    cfg = tiny_config(pretrain_psnr={"iterations": step + 2, "val_every": 0, "checkpoint_every": 100})
    result = train_psnr(cfg, data["hr"], data["lr"], None, None, out, resume=True)
    assert result.resumed_from == step
