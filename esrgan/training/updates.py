"""One optimisation step of each stage. Each returns detached scalar tensors to log.

Kept apart from the loop so tests can check exactly what a step changes: the GAN stage runs
BasicSR's order, first G (with D's parameters frozen), then D on the detached G output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.optim import Optimizer

from esrgan.losses import (
    BatchMean,
    PerceptualLoss,
    chroma_loss,
    generator_loss,
    pixel_loss,
    ra_discriminator_terms,
    ra_generator_loss,
)
from esrgan.training.config import LossWeights


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Mixed precision when ``dtype`` is set (CUDA only in practice), else full precision."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


def optimizer_step(loss: torch.Tensor, optimizer: Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """Backward and step, through the fp16 gradient scaler when there is one."""
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def psnr_step(
    generator: nn.Module,
    lr: torch.Tensor,
    hr: torch.Tensor,
    optimizer: Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Stage 1: minimise L1 between G(lr) and hr."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(lr.device, amp_dtype):
        loss = pixel_loss(generator(lr), hr)
    optimizer_step(loss, optimizer, scaler)
    return {"loss_pixel": loss.detach()}


def generator_step(
    generator: nn.Module,
    discriminator: nn.Module,
    perceptual: PerceptualLoss,
    lr: torch.Tensor,
    hr: torch.Tensor,
    optimizer: Optimizer,
    weights: LossWeights,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    batch_mean: BatchMean = torch.mean,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Stage 2, G half: ``w_p * L_percep + w_g * L_G^Ra + w_1 * L_1 (+ w_c * L_chroma)``, D frozen.

    ``discriminator`` must be the plain module (not its DDP wrapper): D is not updated here, and
    a DDP wrapper would wait for gradients of parameters that do not require any. Its
    BatchNorm layers stay in train mode (batch statistics), as in BasicSR.

    Returns the generator output (for the D half) and the losses.
    """
    discriminator.requires_grad_(False)
    optimizer.zero_grad(set_to_none=True)
    with autocast(lr.device, amp_dtype):
        sr = generator(lr)
        l_pixel = pixel_loss(sr, hr)
        l_percep = perceptual(sr, hr)
        real_logits = discriminator(hr).detach()
        fake_logits = discriminator(sr)
        l_gan = ra_generator_loss(real_logits, fake_logits, batch_mean)
        l_chroma = chroma_loss(sr, hr) if weights.chroma else None
        l_total = generator_loss(
            l_percep, l_gan, l_pixel, weights.perceptual, weights.gan, weights.pixel, l_chroma, weights.chroma
        )
    optimizer_step(l_total, optimizer, scaler)
    discriminator.requires_grad_(True)
    losses = {"loss_g": l_total, "loss_pixel": l_pixel, "loss_percep": l_percep, "loss_gan": l_gan}
    if l_chroma is not None:
        losses["loss_chroma"] = l_chroma
    return sr.detach(), {k: v.detach() for k, v in losses.items()}


def discriminator_step(
    discriminator: nn.Module,
    sr: torch.Tensor,
    hr: torch.Tensor,
    optimizer: Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    batch_mean: BatchMean = torch.mean,
) -> dict[str, torch.Tensor]:
    """Stage 2, D half: relativistic average loss on real HR and the detached G output.

    Real and fake go through D in separate forward passes, so BatchNorm normalises each set by
    its own statistics (as BasicSR does).
    """
    optimizer.zero_grad(set_to_none=True)
    with autocast(hr.device, amp_dtype):
        real_logits = discriminator(hr)
        fake_logits = discriminator(sr.detach())
        l_real, l_fake = ra_discriminator_terms(real_logits, fake_logits, batch_mean)
    optimizer_step(l_real + l_fake, optimizer, scaler)
    return {
        "loss_d_real": l_real.detach(),
        "loss_d_fake": l_fake.detach(),
        "d_real_logit": real_logits.detach().float().mean(),
        "d_fake_logit": fake_logits.detach().float().mean(),
    }
