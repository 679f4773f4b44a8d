"""Every metric an evaluation report can hold, described once.

As BasicSR registers a metric where it is defined, each entry here says what the rest of the
project needs to know about one metric, and every list of metric names derives from this one:
the report order (:data:`esrgan.evaluation.METRICS`), the directions and allowed values of the
pipeline's parameters, the columns of the perception-distortion plot, the registry's listing.

This module imports nothing heavy (no torch), so registry commands can read it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["higher", "lower"]
Kind = Literal["fidelity", "perceptual"]


@dataclass(frozen=True)
class Metric:
    """What the project knows about one metric of the evaluation report.

    Attributes:
        name: the report's key (``psnr_y``).
        better: which way is better: ``"higher"`` (PSNR, SSIM) or ``"lower"`` (distances, NIQE).
        kind: ``"fidelity"`` (distortion against the HR image; computed also with
            ``evaluate.perceptual: false``) or ``"perceptual"`` (NIQE and the learned distances).
        reference: needs the HR image (``False`` for NIQE, a no-reference score).
        imagenet_trunk: needs torchvision's ImageNet trunk in the torch hub cache, which is never
            downloaded here (LPIPS); without it the metric is ``null`` with a reason.
        ranks_alphas: may be the selection metric that picks the sweep's alpha and gates promotion.
        plotted: a column of the perception-distortion plot data (after ``alpha``).
        headline: one of the figures papers report first, listed by ``esrgan registry list``.
    """

    name: str
    better: Direction
    kind: Kind
    reference: bool = True
    imagenet_trunk: bool = False
    ranks_alphas: bool = True
    plotted: bool = True
    headline: bool = False

    @property
    def lower_is_better(self) -> bool:
        """``True`` when a lower value is better (NIQE, LPIPS, chroma error)."""
        return self.better == "lower"


#: Every metric, in report order. lpips_vgg never ranked the sweep nor was plotted, and
#: chroma_error (added for colour casts) was never plotted: both kept so that the plot data and
#: the allowed values stay as they were.
REGISTRY: tuple[Metric, ...] = (
    Metric("psnr_y", "higher", "fidelity", headline=True),
    Metric("ssim_y", "higher", "fidelity", headline=True),
    Metric("psnr_rgb", "higher", "fidelity"),
    Metric("chroma_error", "lower", "fidelity", plotted=False),
    Metric("niqe", "lower", "perceptual", reference=False, headline=True),
    Metric("lpips_alex", "lower", "perceptual", imagenet_trunk=True),
    Metric("lpips_vgg", "lower", "perceptual", imagenet_trunk=True, ranks_alphas=False, plotted=False),
    Metric("stlpips_alex", "lower", "perceptual"),
    Metric("stlpips_vgg", "lower", "perceptual"),
)

_BY_NAME = {m.name: m for m in REGISTRY}


def metric(name: str) -> Metric:
    """The registry entry of ``name``.

    Raises:
        ValueError: ``name`` is not a metric of the report (the message lists the known ones).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; choose from {list(_BY_NAME)}") from None


def names(kind: Kind | None = None) -> tuple[str, ...]:
    """Metric names in report order, all of them or those of one ``kind``."""
    return tuple(m.name for m in REGISTRY if kind is None or m.kind == kind)


def selection_names() -> tuple[str, ...]:
    """The metrics that may rank the sweep's alphas: perceptual ones first (what the selection
    rule is for), then fidelity ones, each in report order."""
    ranked = [m for m in REGISTRY if m.ranks_alphas]
    return tuple(m.name for m in ranked if m.kind == "perceptual") + tuple(
        m.name for m in ranked if m.kind == "fidelity"
    )


def plot_names() -> tuple[str, ...]:
    """The columns of the perception-distortion plot data after ``alpha``, in report order."""
    return tuple(m.name for m in REGISTRY if m.plotted)


def headline_names() -> tuple[str, ...]:
    """The figures a short listing shows (PSNR-Y, SSIM-Y, NIQE), in report order."""
    return tuple(m.name for m in REGISTRY if m.headline)
