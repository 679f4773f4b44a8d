"""The project's container images: where they are pushed, their tags, and what makes a valid reference.

``./run image`` builds them; the KFP components run on ``<repository>:<version>-cpu`` / ``-cuda``
and KServe serves from ``-serve`` (no PyTorch), ``-cpu`` or ``-cuda``. Both the Kubeflow side
(:mod:`pipeline.kfp`) and the registry side (:mod:`pipeline.registry.kserve`) take their names from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import PipelineError

#: Where ``docs/kubeflow.md`` pushes the image; override with ``esrgan kfp compile --image-repository``.
DEFAULT_REPOSITORY = "ghcr.io/owner/esrgan-pipeline"


def project_version() -> str:
    """The installed package version: the image tags' prefix and part of the KFP pipeline key."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("esrgan-pipeline")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "0.0.0"


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
