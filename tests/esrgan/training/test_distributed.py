"""Data parallelism: 2 CPU processes (torchrun, gloo) match one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from esrgan.models import RRDBNet, load_generator
from esrgan.training import train_psnr
from tests._training_helpers import make_pairs, tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*spandrel-based tools:UserWarning")]

_WORKER = """
import json, sys
import torch.distributed as dist
sys.path.insert(0, {tests!r})
from tests._training_helpers import tiny_config
from esrgan.training import train_gan, train_psnr

cfg = json.loads({cfg!r})
psnr = train_psnr(cfg, {hr!r}, {lr!r}, {vhr!r}, {vlr!r}, {out!r} + "/psnr")
# GAN stage smoke test under DDP (D wrapped, G step through D's plain module)
gan = train_gan(cfg, {hr!r}, {lr!r}, None, None, {out!r} + "/gan", init_generator=psnr.generator_path)
open({out!r} + f"/done_{{dist.get_rank()}}_of_{{dist.get_world_size()}}", "w").close()
dist.destroy_process_group()
"""


def test_two_process_gloo_ddp_matches_single_process(tmp_path: Path) -> None:
    import json

    hr, lr = make_pairs(tmp_path / "train", 3, 128)
    vhr, vlr = make_pairs(tmp_path / "val", 1, 48, seed=1)
    cfg = tiny_config(
        pretrain_psnr={
            "iterations": 4,
            "data": {"patch_size": 32, "batch_size": 4, "num_workers": 0},
            "checkpoint_every": 4,
        },
        finetune_gan={"iterations": 2, "data": {"patch_size": 128, "batch_size": 2, "num_workers": 0}},
    )
    script = tmp_path / "worker.py"
    script.write_text(
        _WORKER.format(
            tests=str(Path(__file__).parent),
            cfg=json.dumps(cfg),
            hr=str(hr),
            lr=str(lr),
            vhr=str(vhr),
            vlr=str(vlr),
            out=str(tmp_path / "ddp"),
        )
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ddp" / "done_0_of_2").is_file() and (tmp_path / "ddp" / "done_1_of_2").is_file()

    single = train_psnr(cfg, hr, lr, None, None, tmp_path / "single")
    a = load_generator(single.generator_path).state_dict()
    b = load_generator(tmp_path / "ddp" / "psnr" / "generator.pth").state_dict()
    torch.manual_seed(0)  # the runs' seed: the initial weights both started from
    init = RRDBNet(**load_generator(single.generator_path).config).state_dict()
    moved = max((a[k] - init[k]).abs().max().item() for k in a)
    assert moved > 1e-3  # training moved the weights far more than the tolerance below
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=lambda m, k=key: f"{k}: {m}")
    # rank 0 alone wrote outputs and validated
    assert (tmp_path / "ddp" / "psnr" / "samples").is_dir()
    assert (tmp_path / "ddp" / "gan" / "discriminator.pth").is_file()
