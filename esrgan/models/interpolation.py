"""Network interpolation: ``theta = (1 - alpha) * theta_PSNR + alpha * theta_GAN``.

Interpolating the weights of the PSNR-oriented and the GAN generators trades fidelity for
perceptual quality continuously, without retraining (ESRGAN, section 3.4).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def interpolate(
    psnr_state: Mapping[str, torch.Tensor], gan_state: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """Blend two generator state dicts of identical architecture.

    Args:
        psnr_state: weights of the PSNR-oriented generator (``alpha = 0``).
        gan_state: weights of the GAN generator (``alpha = 1``).
        alpha: weight of the GAN generator, in [0, 1].

    Returns:
        A new state dict; floating-point tensors are interpolated in float64 and cast back,
        integer buffers (if any) are taken from ``psnr_state``.

    Raises:
        ValueError: alpha outside [0, 1], or the key sets or tensor shapes differ.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"interpolation alpha must be in [0, 1], got {alpha}")
    only_psnr = sorted(set(psnr_state) - set(gan_state))
    only_gan = sorted(set(gan_state) - set(psnr_state))
    if only_psnr or only_gan:
        raise ValueError(
            "cannot interpolate generators with different keys: "
            f"only in PSNR model {only_psnr[:3]}, only in GAN model {only_gan[:3]}"
        )
    out: dict[str, torch.Tensor] = {}
    for key, a in psnr_state.items():
        b = gan_state[key]
        if a.shape != b.shape:
            raise ValueError(f"cannot interpolate {key!r}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
        if a.is_floating_point():
            mixed = (1.0 - alpha) * a.detach().double() + alpha * b.detach().to(a.device).double()
            out[key] = mixed.to(a.dtype)
        else:
            out[key] = a.detach().clone()
    return out
