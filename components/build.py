"""Turn the component functions into KFP components on the project's own image.

``install_kfp_package=False``: the image already has kfp (the ``pipeline`` extra), so a pod
starts without ``pip install``. The image is a compile-time choice (KFP fixes a task's image in
``pipeline.yaml``): training runs on the ``-cuda`` variant, everything else on the slim ``-cpu``.
"""

from __future__ import annotations

import re
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
from pipeline.errors import PipelineError

__all__ = ["DEFAULT_REPOSITORY", "Components", "ImageReferenceError", "Images", "build_components", "image_problems"]

# The OCI/Docker reference grammar (github.com/distribution/reference, regexp.go). A path component's
# separator there is ``[_.]|__|[-]*``; ``-+`` here is the same language (zero dashes only joins two
# alphanumeric runs) without the nested ``[a-z0-9]+`` that makes Python's backtracking regex exponential.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
REPOSITORY_RE = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_REPOSITORY = 255  # distribution/reference NameTotalLengthMax
MAX_TAG = 128
VARIANTS = ("cpu", "cuda")
_EXAMPLE = "ghcr.io/<owner>/esrgan-pipeline"


class ImageReferenceError(PipelineError, ValueError):
    """An image repository or tag that is not a valid OCI/Docker reference; nothing was written."""


def _shown(value: str, limit: int = 80) -> str:
    """``value`` quoted on one line (control characters escaped), cut to about ``limit`` characters."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def image_problems(repository: str, tag: str | None) -> list[str]:
    """One line per problem with ``<repository>:<tag>-cpu`` / ``-cuda`` as image references (``[]``: valid).

    ``tag`` None means the package version.
    """
    problems = []
    if not repository:
        problems.append(f"--image-repository is empty: give the image without its tag, e.g. {_EXAMPLE}")
    elif len(repository) > MAX_REPOSITORY:
        problems.append(
            f"--image-repository {_shown(repository)} is not a valid image repository: "
            f"longer than {MAX_REPOSITORY} characters"
        )
    elif not REPOSITORY_RE.fullmatch(repository):
        last = repository.rsplit("/", 1)[-1]
        if ":" in last or "@" in last:
            hint = "give it without a tag or digest (the tag is --image-tag)"
        elif repository.lower() != repository and REPOSITORY_RE.fullmatch(repository.lower()):
            hint = f"repository paths are lowercase ({repository.lower()})"
        else:
            hint = (
                "lowercase letters and digits, joined by '.', '_', '__' or dashes, in '/'-separated "
                f"components, optionally after a registry host[:port] (e.g. {_EXAMPLE})"
            )
        problems.append(f"--image-repository {_shown(repository)} is not a valid image repository: {hint}")
    longest = MAX_TAG - 1 - max(map(len, VARIANTS))
    if tag is None:
        version = project_version()
        if not TAG_RE.fullmatch(f"{version}-cuda"):
            problems.append(f"the package version {_shown(version)} is not a valid image tag: pass --image-tag")
    elif not tag:
        problems.append(f"--image-tag is empty: leave it out to use the package version ({project_version()})")
    elif len(tag) > longest:
        problems.append(
            f"--image-tag {_shown(tag)} is not a valid image tag: longer than {longest} characters "
            f"(with the '-cuda' suffix, over Docker's {MAX_TAG})"
        )
    elif not TAG_RE.fullmatch(tag):
        problems.append(
            f"--image-tag {_shown(tag)} is not a valid image tag: letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-'"
        )
    return problems


@dataclass(frozen=True)
class Images:
    """The two variants of the project image built from the top-level ``Dockerfile``."""

    cpu: str
    cuda: str

    @classmethod
    def for_version(cls, repository: str = DEFAULT_REPOSITORY, tag: str | None = None) -> Images:
        """``<repository>:<tag>-cpu`` / ``-cuda``; ``tag`` defaults to the package version.

        Raises:
            ImageReferenceError: ``repository`` or ``tag`` would make an invalid image reference.
        """
        problems = image_problems(repository, tag)
        if problems:
            raise ImageReferenceError(problems)
        tag = project_version() if tag is None else tag
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
