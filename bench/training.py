"""One full GAN-stage training step: ours vs BasicSR's ESRGANModel, same weights, same batch.

    python bench/training.py                 # CPU: batch 2, HR patch 128 (LR 32), about a minute
    python bench/training.py --device cuda   # adds bf16 autocast and channels_last rows for ours

A step is everything one iteration of the GAN stage does after the batch is on the device:
G forward, L1 + perceptual (VGG19 ``conv5_4`` before ReLU) + relativistic GAN loss, G backward and
Adam step (D frozen), then D forward on real and fake, RaGAN loss, D backward and Adam step.

* ours: ``esrgan.training.updates.generator_step`` + ``discriminator_step`` (what ``train_gan``
  runs), with ``RRDBNet``, ``VGGDiscriminator`` and ``PerceptualLoss``.
* basicsr: the unmodified ``ESRGANModel.optimize_parameters`` of ``basicsr-fixed`` with BasicSR's
  ``RRDBNet``, ``VGGStyleDiscriminator``, ``L1Loss``, ``PerceptualLoss`` and ``GANLoss('vanilla')``,
  configured as ``options/train/ESRGAN/train_ESRGAN_x4.yml`` (weights 1e-2 / 1 / 5e-3, Adam lr 1e-4,
  betas (0.9, 0.99)). Both use the same Adam settings.

Same weights everywhere: BasicSR's G and D get our tensors, and both perceptual losses use the
same VGG19 (``backbone='random'``: seeded random weights with VGG19's exact architecture up to
``conv5_4``, since the ImageNet file cannot be downloaded here; speed does not depend on the
values). BasicSR reads it from a torchvision-layout file we write to a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import peers

from esrgan.losses import PerceptualLoss
from esrgan.models import RRDBNet, VGGDiscriminator
from esrgan.training.config import LossWeights
from esrgan.training.updates import discriminator_step, generator_step

SCRIPT = Path(__file__).resolve()
ARCH = {"num_feat": 64, "num_block": 23, "num_grow": 32, "scale": 4}
LR, BETAS = 1e-4, (0.9, 0.99)
Step = Callable[[], dict[str, float]]


def make_batch(batch: int, patch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    hr = torch.rand((batch, 3, patch, patch), generator=gen)
    lr = torch.nn.functional.interpolate(hr, scale_factor=1 / ARCH["scale"], mode="area")
    return lr.to(device), hr.to(device)


def _ours_modules(patch: int) -> tuple[RRDBNet, VGGDiscriminator, PerceptualLoss]:
    torch.manual_seed(0)
    generator = RRDBNet(**ARCH)
    torch.manual_seed(1)
    discriminator = VGGDiscriminator(patch)
    perceptual = PerceptualLoss(backbone="random")  # VGG19 up to conv5_4 (pre-ReLU), seed 0
    return generator, discriminator, perceptual


def ours_step(
    patch: int,
    lr_img: torch.Tensor,
    hr_img: torch.Tensor,
    device: torch.device,
    amp: torch.dtype | None = None,
    channels_last: bool = False,
) -> Step:
    generator, discriminator, perceptual = _ours_modules(patch)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    generator.to(device, memory_format=fmt).train()
    discriminator.to(device, memory_format=fmt).train()
    perceptual.to(device).extractor.to(memory_format=fmt)
    opt_g = torch.optim.Adam(generator.parameters(), lr=LR, betas=BETAS)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=LR, betas=BETAS)
    scaler_g = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    scaler_d = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    weights = LossWeights()
    lr_in, hr_in = lr_img.contiguous(memory_format=fmt), hr_img.contiguous(memory_format=fmt)

    def step() -> dict[str, float]:
        sr, values = generator_step(generator, discriminator, perceptual, lr_in, hr_in, opt_g, weights, scaler_g, amp)
        values |= discriminator_step(discriminator, sr, hr_in, opt_d, scaler_d, amp)
        return {k: float(v) for k, v in values.items()}

    return step


def _vgg19_file(perceptual: PerceptualLoss, directory: Path) -> Path:
    """Our perceptual VGG19 as a full torchvision ``vgg19`` state dict (what BasicSR loads)."""
    vgg = torchvision.models.vgg19(weights=None)
    features = perceptual.extractor.features.state_dict()
    state = vgg.state_dict()
    state.update({f"features.{k}": v for k, v in features.items()})
    path = directory / "vgg19-random-seed0.pth"
    torch.save(state, path)
    return path


def _copy_by_order(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters and buffers between two modules that register the same tensors in the same order."""
    src_state, dst_state = src.state_dict(), dst.state_dict()
    if [v.shape for v in src_state.values()] != [v.shape for v in dst_state.values()]:
        raise peers.PeerUnavailable("BasicSR's VGGStyleDiscriminator no longer matches ours tensor for tensor")
    dst.load_state_dict(dict(zip(dst_state, src_state.values(), strict=True)))


def basicsr_step(patch: int, lr_img: torch.Tensor, hr_img: torch.Tensor, device: torch.device) -> Step:
    mods = peers.basicsr_modules()
    generator, discriminator, perceptual = _ours_modules(patch)
    net_g = mods["rrdbnet_arch"].RRDBNet(3, 3, scale=4, num_feat=64, num_block=23, num_grow_ch=32)
    net_g.load_state_dict(generator.state_dict())
    net_d = mods["discriminator_arch"].VGGStyleDiscriminator(num_in_ch=3, num_feat=64, input_size=patch)
    _copy_by_order(discriminator, net_d)
    with tempfile.TemporaryDirectory() as tmp:
        mods["vgg_arch"].VGG_PRETRAIN_PATH = str(_vgg19_file(perceptual, Path(tmp)))
        cri_perceptual = mods["basic_loss"].PerceptualLoss(
            layer_weights={"conv5_4": 1.0},
            vgg_type="vgg19",
            use_input_norm=True,
            range_norm=False,
            perceptual_weight=1.0,
            style_weight=0.0,
            criterion="l1",
        )
    del generator, discriminator, perceptual
    model = mods["esrgan_model"].ESRGANModel()  # its base class is stubbed: set what optimize_parameters uses
    model.net_g = net_g.to(device).train()
    model.net_d = net_d.to(device).train()
    model.cri_pix = mods["basic_loss"].L1Loss(loss_weight=1e-2, reduction="mean").to(device)
    model.cri_perceptual = cri_perceptual.to(device)
    model.cri_gan = mods["gan_loss"].GANLoss("vanilla", real_label_val=1.0, fake_label_val=0.0, loss_weight=5e-3)
    model.optimizer_g = torch.optim.Adam(net_g.parameters(), lr=LR, betas=BETAS)
    model.optimizer_d = torch.optim.Adam(net_d.parameters(), lr=LR, betas=BETAS)
    model.net_d_iters, model.net_d_init_iters, model.ema_decay = 1, 0, 0
    model.lq, model.gt = lr_img, hr_img

    def reduce_loss_dict(loss_dict: dict[str, torch.Tensor]) -> OrderedDict[str, float]:
        # BaseModel.reduce_loss_dict, single process
        with torch.no_grad():
            return OrderedDict((name, value.mean().item()) for name, value in loss_dict.items())

    model.reduce_loss_dict = reduce_loss_dict
    counter = iter(range(1, 1 << 30))

    def step() -> dict[str, float]:
        model.optimize_parameters(next(counter))
        return dict(model.log_dict)

    return step


def make_steps(args: argparse.Namespace, device: torch.device, only: str | None = None) -> dict[str, Step]:
    lr_img, hr_img = make_batch(args.batch, args.patch, device)
    steps: dict[str, Step] = {}
    if only in (None, "ours"):
        steps["ours"] = ours_step(args.patch, lr_img, hr_img, device)
    if only in (None, "basicsr"):
        try:
            steps["basicsr"] = basicsr_step(args.patch, lr_img, hr_img, device)
        except peers.PeerUnavailable as exc:
            print(f"skipping basicsr: {exc}", file=sys.stderr)
    if device.type == "cuda" and not args.no_variants and only in (None, "ours channels_last", "ours bf16"):
        if only in (None, "ours channels_last"):
            steps["ours channels_last"] = ours_step(args.patch, lr_img, hr_img, device, channels_last=True)
        if only in (None, "ours bf16"):
            steps["ours bf16"] = ours_step(args.patch, lr_img, hr_img, device, torch.bfloat16, channels_last=True)
    return steps


def child(impl: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    step = make_steps(args, device, only=impl)[impl]
    # Two steps: the first also allocates gradients and Adam state, which stay for the whole run.
    return common.measure_peak(lambda: (step(), step()), device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--patch", type=int, default=128, choices=[128, 256], help="HR patch (D input)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-variants", action="store_true")
    parser.add_argument("--child", metavar="IMPL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    device = torch.device(args.device)
    if args.child:
        print(common.json.dumps(child(args.child, args, device)))
        return

    info = common.machine_info(device)
    with contextlib.suppress(peers.PeerUnavailable):
        info["basicsr"] = peers.basicsr_version()
    print(
        f"machine: {info['cpu'] if device.type == 'cpu' else info['device_name']}, torch {torch.__version__}, "
        f"load {info['loadavg_start'][0]:.2f}; batch {args.batch}, HR patch {args.patch} "
        f"(LR {args.patch // ARCH['scale']}), perceptual VGG19 conv5_4 (random weights, same for both)"
    )
    steps = make_steps(args, device)
    # Same starting point: the first step's losses must agree (they are logged for the record).
    first = {name: step() for name, step in steps.items()}
    times = common.time_interleaved(steps, args.reps, max(0, args.warmup - 1), device)
    results: dict[str, Any] = {
        "machine": info,
        "arch": ARCH,
        "batch": args.batch,
        "patch": args.patch,
        "perceptual": "VGG19 conv5_4 pre-ReLU, random weights (seed 0)",
        "reps": args.reps,
        "first_step_losses": first,
        "rows": {},
    }
    table = []
    ours_t = common.median(times["ours"])
    ours_mem: float | None = None
    for name in steps:
        t = common.median(times[name])
        child_args = [name, "--device", args.device, "--batch", str(args.batch), "--patch", str(args.patch)]
        mem = {} if args.no_memory else common.run_child(SCRIPT, child_args)
        peak = mem.get("peak_delta_mib", float("nan"))
        if name == "ours":
            ours_mem = peak
        results["rows"][name] = {"seconds": times[name], "median_s": t, "it_per_s": 1.0 / t, "memory": mem}
        table.append([name, t, 1.0 / t, t / ours_t, peak, (ours_mem or float("nan")) / peak])
    common.print_table(["impl", "median s/step", "it/s", "speed ours/this", "peak MiB", "mem ours/this"], table)
    g_ours = first["ours"]["loss_g"]
    if "basicsr" in first:
        b = first["basicsr"]
        g_basicsr = b["l_g_pix"] + b["l_g_percep"] + b["l_g_gan"]
        print(
            f"first-step G loss: ours {g_ours:.6f}, basicsr {g_basicsr:.6f}; D real/fake: ours "
            f"{first['ours']['loss_d_real']:.6f}/{first['ours']['loss_d_fake']:.6f}, basicsr "
            f"{b['l_d_real']:.6f}/{b['l_d_fake']:.6f}"
        )
    path = common.write_json(f"training_{device.type}.json", results)
    print(f"load average at end: {common.os.getloadavg()[0]:.2f}; wrote {path}")


if __name__ == "__main__":
    main()
