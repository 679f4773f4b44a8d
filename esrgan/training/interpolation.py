"""Network interpolation sweep: one generator file per alpha between the PSNR and GAN models."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from esrgan.models import RRDBNet, interpolate, load_generator, save_generator


def alpha_filename(alpha: float) -> str:
    """``net_alpha_0.20.pth``: alpha (the GAN model's weight) with two decimals."""
    return f"net_alpha_{alpha:.2f}.pth"


def interpolate_sweep(
    psnr_path: str | os.PathLike[str],
    gan_path: str | os.PathLike[str],
    alphas: Iterable[float],
    out_dir: str | os.PathLike[str],
) -> list[Path]:
    """Write ``(1 - alpha) * PSNR + alpha * GAN`` for each alpha as ``out_dir/net_alpha_<a.aa>.pth``.

    alpha 0 is the PSNR model, 1 the GAN model. Files are written with ``save_generator`` and
    read back with ``load_generator``. Returns the paths in the order of ``alphas``.

    Raises:
        ValueError: an alpha outside [0, 1], two alphas with the same two-decimal name, or
            generators of different architectures.
    """
    alphas = [float(a) for a in alphas]
    names = [alpha_filename(a) for a in alphas]
    if len(set(names)) != len(names):
        raise ValueError(f"alphas {alphas} collide at two decimals in the file names")
    psnr_model, gan_model = load_generator(psnr_path), load_generator(gan_path)
    if psnr_model.config != gan_model.config:
        raise ValueError(f"cannot interpolate {psnr_model.config} with {gan_model.config}")
    psnr_state, gan_state = psnr_model.state_dict(), gan_model.state_dict()
    paths = []
    for alpha, name in zip(alphas, names, strict=True):
        model = RRDBNet(**psnr_model.config)
        model.load_state_dict(interpolate(psnr_state, gan_state, alpha))
        paths.append(save_generator(model, Path(out_dir) / name))
    return paths
