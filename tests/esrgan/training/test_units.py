"""Training building blocks: config schema, schedules, sampler, EMA, checkpoints, steps, interpolation."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from esrgan.losses import PerceptualLoss, chroma_loss
from esrgan.models import RRDBNet, VGGDiscriminator, alpha_filename, interpolate_sweep, load_generator, save_generator
from esrgan.training import (
    ConfigError,
    LossWeights,
    ScheduleConfig,
    load_config,
    lr_at,
    parse_config,
)
from esrgan.training.ema import ModelEMA
from esrgan.training.resume import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from esrgan.training.sampler import EpochIndexed, InfiniteSampler
from esrgan.training.updates import discriminator_step, generator_step
from tests._training_helpers import tiny_config

ROOT = Path(__file__).resolve().parents[3]
#: The two profiles; each is one file, read here for its training sections only.
PROFILES = [ROOT / "params.yaml", ROOT / "configs" / "params.paper.yaml"]

pytestmark = pytest.mark.filterwarnings("ignore:.*spandrel-based tools:UserWarning")


# ---- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_the_training_sections_of_the_shipped_profiles_validate(profile: Path) -> None:
    cfg = load_config(profile)
    assert cfg.stage("gan") is cfg.finetune_gan and cfg.finetune_gan.data.patch_size in (128, 256)


def test_paper_profile_is_the_paper_recipe() -> None:
    cfg = load_config(ROOT / "configs" / "params.paper.yaml")
    g = cfg.model
    assert (g.num_feat, g.num_block, g.num_grow, g.scale) == (64, 23, 32, 4)
    psnr, gan = cfg.pretrain_psnr, cfg.finetune_gan
    assert psnr.iterations == 1_000_000 and gan.iterations == 400_000
    assert psnr.optimizer.lr == 2e-4 and gan.optimizer.lr == gan.optimizer_d.lr == 1e-4
    assert gan.schedule.milestones == [50_000, 100_000, 200_000, 300_000]
    w = gan.loss_weights
    assert (w.perceptual, w.gan, w.pixel, w.chroma) == (1.0, 5e-3, 1e-2, 0.0)
    assert gan.perceptual.backbone == "vgg19-imagenet" and gan.perceptual.layers == {"conv5_4": 1.0}


def test_tiny_config_is_allowed() -> None:
    cfg = parse_config(tiny_config(pretrain_psnr={"iterations": 1}, finetune_gan={"iterations": 1}))
    assert cfg.pretrain_psnr.iterations == 1


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    bad = tiny_config(pretrain_psnr={"iterationz": 5})
    with pytest.raises(ConfigError, match=r"pretrain_psnr\.iterationz: Extra inputs are not permitted"):
        parse_config(bad)
    with pytest.raises(ConfigError, match="discriminator's input"):
        parse_config(tiny_config(finetune_gan={"data": {"patch_size": 96, "batch_size": 2}}))
    with pytest.raises(ConfigError, match="not a multiple of scale"):
        parse_config(tiny_config(pretrain_psnr={"data": {"patch_size": 30, "batch_size": 2}}))
    with pytest.raises(ConfigError, match="strictly increasing"):
        parse_config(tiny_config(pretrain_psnr={"schedule": {"kind": "multistep", "milestones": [5, 3]}}))
    path = tmp_path / "c.yaml"
    path.write_text("pretrain_psnr: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot read YAML"):
        load_config(path)


# ---- schedules ----------------------------------------------------------------------------------


def test_multistep_halves_at_each_milestone_like_multisteplr() -> None:
    sched = ScheduleConfig(kind="multistep", milestones=[50_000, 100_000, 200_000, 300_000], gamma=0.5)
    assert lr_at(0, 1e-4, sched, 400_000) == 1e-4
    assert lr_at(49_999, 1e-4, sched, 400_000) == 1e-4
    assert lr_at(50_000, 1e-4, sched, 400_000) == 5e-5
    assert lr_at(100_000, 1e-4, sched, 400_000) == 2.5e-5
    assert lr_at(399_999, 1e-4, sched, 400_000) == pytest.approx(6.25e-6)
    # torch's MultiStepLR, stepped once per iteration, agrees
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 5], gamma=0.5)
    small = ScheduleConfig(kind="multistep", milestones=[3, 5])
    for step in range(8):
        assert lr_at(step, 1.0, small, 8) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()


def test_step_and_cosine_schedules() -> None:
    step = ScheduleConfig(kind="step", step_size=200_000, gamma=0.5)
    assert [lr_at(i, 2e-4, step, 10**6) for i in (0, 199_999, 200_000, 400_000)] == [2e-4, 2e-4, 1e-4, 5e-5]
    cos = ScheduleConfig(kind="cosine", eta_min=1e-5)
    assert lr_at(0, 1e-3, cos, 100) == pytest.approx(1e-3)
    assert lr_at(50, 1e-3, cos, 100) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(100, 1e-3, cos, 100) == pytest.approx(1e-5)


# ---- sampler ------------------------------------------------------------------------------------


def test_infinite_sampler_is_deterministic_resumable_and_shardable() -> None:
    def take(sampler: InfiniteSampler, n: int) -> list[tuple[int, int]]:
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    full = take(InfiniteSampler(5, 4, seed=3), 24)
    assert full == take(InfiniteSampler(5, 4, seed=3), 24)
    assert sorted(i for e, i in full[:5]) == list(range(5)) and {e for e, _ in full[:5]} == {0}
    assert full[8:] == take(InfiniteSampler(5, 4, seed=3, start_iteration=2), 16)
    r0 = take(InfiniteSampler(5, 4, seed=3, rank=0, world_size=2), 12)
    r1 = take(InfiniteSampler(5, 4, seed=3, rank=1, world_size=2), 12)
    for k in range(6):  # each global batch = rank 0's share + rank 1's share
        assert full[4 * k : 4 * k + 4] == r0[2 * k : 2 * k + 2] + r1[2 * k : 2 * k + 2]
    with pytest.raises(ValueError):
        InfiniteSampler(5, 3, world_size=2)


def test_epoch_indexed_sets_the_epoch() -> None:
    class Data:
        epoch = -1

        def __len__(self) -> int:
            return 3

        def set_epoch(self, e: int) -> None:
            self.epoch = e

        def __getitem__(self, i: int) -> tuple[int, int]:
            return self.epoch, i

    view = EpochIndexed(Data())
    assert view[(2, 1)] == (2, 1) and view[(5, 0)] == (5, 0)


# ---- EMA, checkpoints ---------------------------------------------------------------------------


def test_ema_update() -> None:
    model = torch.nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.9)
    before = ema.module.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, 0.9 * before + 0.1 * model.weight)
    assert not ema.module.weight.requires_grad


def test_checkpoint_roundtrip_weights_only_and_rng(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = {"stage": "psnr", "iteration": 7, "rng": rng_state(), "config": {"a": [1, 2.5, None, "x"]}}
    expected = (random.random(), np.random.rand(), torch.rand(1))
    for it in (7, 8, 9):
        path = save_checkpoint(tmp_path, {**state, "iteration": it}, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["iter_00000008.pth", "iter_00000009.pth"]
    loaded = load_checkpoint(path)  # torch.load(weights_only=True) inside
    torch.load(path, weights_only=True)
    set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
    assert loaded["config"] == {"a": [1, 2.5, None, "x"]}


# ---- one GAN step -------------------------------------------------------------------------------


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(not torch.equal(v, before[k]) for k, v in module.named_parameters() if k.endswith("weight"))


def test_generator_step_updates_g_only_and_discriminator_step_d_only() -> None:
    torch.manual_seed(0)
    g = RRDBNet(num_feat=8, num_block=1, num_grow=4)
    d = VGGDiscriminator(128, num_feat=4)
    percep = PerceptualLoss(layers={"conv1_2": 1.0}, backbone="random")
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3)
    lr, hr = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 128, 128)
    g0, d0 = _snapshot(g), _snapshot(d)

    seen_grad = {}
    hooks = [p.register_hook(lambda grad, n=n: seen_grad.setdefault(n, grad)) for n, p in d.named_parameters()]
    sr, losses = generator_step(g, d, percep, lr, hr, opt_g, LossWeights())
    for h in hooks:
        h.remove()
    assert _changed(g, g0), "G must change in the G step"
    assert all(torch.equal(v, d0[k]) for k, v in d.named_parameters()), "D must not change in the G step"
    assert not seen_grad and all(p.grad is None for p in d.parameters()), "D is frozen during the G step"
    assert all(p.requires_grad for p in d.parameters()), "D is unfrozen afterwards"
    assert set(losses) == {"loss_g", "loss_pixel", "loss_percep", "loss_gan"}
    assert not sr.requires_grad

    g1 = _snapshot(g)
    metrics = discriminator_step(d, sr, hr, opt_d)
    assert _changed(d, d0), "D must change in the D step"
    assert all(torch.equal(v, g1[k]) for k, v in g.named_parameters()), "G must not change in the D step"
    assert {"loss_d_real", "loss_d_fake", "d_real_logit", "d_fake_logit"} <= set(metrics)


def test_generator_step_adds_the_weighted_chroma_term() -> None:
    torch.manual_seed(0)
    g = RRDBNet(num_feat=8, num_block=1, num_grow=4)
    d = VGGDiscriminator(128, num_feat=4)
    percep = PerceptualLoss(layers={"conv1_2": 1.0}, backbone="random")
    opt = torch.optim.SGD(g.parameters(), lr=0.0)  # lr 0: the losses of one state, twice
    lr, hr = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 128, 128)
    sr, plain = generator_step(g, d, percep, lr, hr, opt, LossWeights())
    _, extra = generator_step(g, d, percep, lr, hr, opt, LossWeights(chroma=2.0))
    assert "loss_chroma" not in plain
    assert extra["loss_chroma"].item() == pytest.approx(chroma_loss(sr, hr).item(), rel=1e-5)
    assert extra["loss_g"].item() == pytest.approx((plain["loss_g"] + 2.0 * extra["loss_chroma"]).item(), rel=1e-5)


# ---- interpolation ------------------------------------------------------------------------------


def test_interpolate_sweep_endpoints_and_names(tmp_path: Path) -> None:
    torch.manual_seed(0)
    a, b = RRDBNet(num_feat=8, num_block=1, num_grow=4), RRDBNet(num_feat=8, num_block=1, num_grow=4)
    pa, pb = save_generator(a, tmp_path / "psnr.pth"), save_generator(b, tmp_path / "gan.pth")
    paths = interpolate_sweep(pa, pb, [0.0, 0.2, 0.5, 1.0], tmp_path / "sweep")
    assert [p.name for p in paths] == ["alpha_0.0.pth", "alpha_0.2.pth", "alpha_0.5.pth", "alpha_1.0.pth"]
    models = [load_generator(p) for p in paths]
    for key, value in a.state_dict().items():
        assert torch.equal(models[0].state_dict()[key], value)
        assert torch.equal(models[3].state_dict()[key], b.state_dict()[key])
        torch.testing.assert_close(models[2].state_dict()[key], (value + b.state_dict()[key]) / 2)
    assert alpha_filename(0.201) != alpha_filename(0.204)  # names never collide (the old two-decimal ones did)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        interpolate_sweep(pa, pb, [1.5], tmp_path / "x")
