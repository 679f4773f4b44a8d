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

from components import DEFAULT_REPOSITORY
from components.evaluate import evaluate
from components.extract import extract_patches
from components.interpolate import interpolate
from components.register import register
from components.resolve import resolve_params
from components.runtime import project_version
from components.train import finetune_gan, pretrain_psnr

__all__ = ["DEFAULT_REPOSITORY", "Components", "Images", "build_components"]


@dataclass(frozen=True)
class Images:
    """The two variants of the project image built from the top-level ``Dockerfile``."""

    cpu: str
    cuda: str

    @classmethod
    def for_version(cls, repository: str = DEFAULT_REPOSITORY, tag: str | None = None) -> Images:
        """``<repository>:<tag>-cpu`` / ``-cuda``; ``tag`` defaults to the package version."""
        tag = tag or project_version()
        return cls(cpu=f"{repository}:{tag}-cpu", cuda=f"{repository}:{tag}-cuda")


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
