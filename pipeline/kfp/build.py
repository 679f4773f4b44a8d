"""Turn the component functions into KFP components on the project's own image.

``install_kfp_package=False``: the image already has kfp (the ``pipeline`` extra), so a pod
starts without ``pip install``. The image is a compile-time choice (KFP fixes a task's image in
``pipeline.yaml``): training runs on the ``-cuda`` variant, everything else on the slim ``-cpu``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kfp import dsl
from kfp.dsl.python_component import PythonComponent

from pipeline.images import Images
from pipeline.kfp.components.evaluate import evaluate
from pipeline.kfp.components.extract_patches import extract_patches
from pipeline.kfp.components.finetune_gan import finetune_gan
from pipeline.kfp.components.interpolate import interpolate
from pipeline.kfp.components.pretrain_psnr import pretrain_psnr
from pipeline.kfp.components.register import register
from pipeline.kfp.components.resolve_params import resolve_params

__all__ = ["Components", "build_components"]


@dataclass(frozen=True)
class Components:
    resolve_params: PythonComponent
    extract_patches: PythonComponent
    pretrain_psnr: PythonComponent
    finetune_gan: PythonComponent
    interpolate: PythonComponent
    evaluate: PythonComponent
    register: PythonComponent


def build_components(images: Images) -> Components:
    """One KFP component per step, each on the image variant it needs."""

    def on(image: str, func: Callable[..., object]) -> PythonComponent:
        return dsl.component(func, base_image=image, install_kfp_package=False)

    return Components(
        resolve_params=on(images.cpu, resolve_params),
        extract_patches=on(images.cpu, extract_patches),
        pretrain_psnr=on(images.cuda, pretrain_psnr),
        finetune_gan=on(images.cuda, finetune_gan),
        interpolate=on(images.cpu, interpolate),
        evaluate=on(images.cpu, evaluate),
        register=on(images.cpu, register),
    )
