"""Network interpolation: ``theta = (1 - alpha) * theta_PSNR + alpha * theta_GAN``.

Interpolating the weights of the PSNR-oriented and the GAN generators trades fidelity for
perceptual quality continuously, without retraining (ESRGAN, section 3.4). :func:`interpolate`
blends two state dicts; :func:`write_interpolated` and :func:`interpolate_sweep` write generator
files named by :func:`alpha_filename`, the one place an alpha becomes a file name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from esrgan.models.checkpoints import load_generator, save_generator
from esrgan.models.rrdbnet import RRDBNet


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


def alpha_filename(alpha: float, suffix: str = ".pth") -> str:
    """``alpha_0.2.pth``: Python's shortest form of the float, which is how DVC names the sweep's
    stages (``interpolate@0.2``) and files; distinct alphas never share a name."""
    return f"alpha_{float(alpha)}{suffix}"


def _load_pair(psnr_path: str | os.PathLike[str], gan_path: str | os.PathLike[str]) -> tuple[RRDBNet, RRDBNet]:
    psnr_model, gan_model = load_generator(psnr_path), load_generator(gan_path)
    if psnr_model.config != gan_model.config:
        raise ValueError(f"cannot interpolate {psnr_model.config} with {gan_model.config}")
    return psnr_model, gan_model


def _blend(psnr_model: RRDBNet, gan_model: RRDBNet, alpha: float) -> RRDBNet:
    model = RRDBNet(**psnr_model.config)
    model.load_state_dict(interpolate(psnr_model.state_dict(), gan_model.state_dict(), alpha))
    return model


def write_interpolated(
    psnr_path: str | os.PathLike[str], gan_path: str | os.PathLike[str], alpha: float, out: str | os.PathLike[str]
) -> Path:
    """Write ``(1 - alpha) * PSNR + alpha * GAN`` to ``out`` (atomically, by ``save_generator``).

    Raises:
        ValueError: alpha outside [0, 1], or generators of different architectures.
    """
    return save_generator(_blend(*_load_pair(psnr_path, gan_path), alpha), out)


def interpolate_sweep(
    psnr_path: str | os.PathLike[str],
    gan_path: str | os.PathLike[str],
    alphas: Iterable[float],
    out_dir: str | os.PathLike[str],
) -> list[Path]:
    """:func:`write_interpolated` for each alpha, as ``out_dir/`` :func:`alpha_filename`.

    alpha 0 is the PSNR model, 1 the GAN model. Returns the paths in the order of ``alphas``.

    Raises:
        ValueError: an alpha outside [0, 1], or generators of different architectures.
    """
    psnr_model, gan_model = _load_pair(psnr_path, gan_path)
    return [save_generator(_blend(psnr_model, gan_model, float(a)), Path(out_dir) / alpha_filename(a)) for a in alphas]
