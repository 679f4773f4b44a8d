"""The metric registry is the one list of metrics: the report's order comes from it, and each
entry's description (direction, fidelity or perceptual, reference, ImageNet trunk) is what the
metric actually does when ``evaluate_folder`` computes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from torch import nn

from esrgan.evaluation import METRICS, evaluate_folder
from esrgan.imageio import write_image
from esrgan.metrics import PERCEPTUAL_METRICS, clear_cache
from esrgan.metrics.registry import (
    REGISTRY,
    headline_names,
    metric,
    names,
    plot_names,
    selection_names,
)


def test_names_are_unique_and_in_report_order() -> None:
    assert len(set(names())) == len(REGISTRY)
    assert names() == METRICS
    assert names() == names("fidelity") + names("perceptual")  # the report lists fidelity first


def test_the_derived_lists() -> None:
    # What the pipeline's parameters, plot and registry listing were written as before the registry.
    assert names() == (
        "psnr_y",
        "ssim_y",
        "psnr_rgb",
        "chroma_error",
        "niqe",
        "lpips_alex",
        "lpips_vgg",
        "stlpips_alex",
        "stlpips_vgg",
    )
    assert names("fidelity") == ("psnr_y", "ssim_y", "psnr_rgb", "chroma_error")
    assert selection_names() == (
        "niqe",
        "lpips_alex",
        "stlpips_alex",
        "stlpips_vgg",
        "psnr_y",
        "ssim_y",
        "psnr_rgb",
        "chroma_error",
    )
    assert plot_names() == ("psnr_y", "ssim_y", "psnr_rgb", "niqe", "lpips_alex", "stlpips_alex", "stlpips_vgg")
    assert headline_names() == ("psnr_y", "ssim_y", "niqe")


def test_unknown_metric_names_the_known_ones() -> None:
    assert metric("niqe").lower_is_better and not metric("psnr_y").lower_is_better
    with pytest.raises(ValueError, match=r"unknown metric 'psnr'; choose from \['psnr_y', "):
        metric("psnr")


def test_the_learned_distances_are_the_reference_perceptual_metrics() -> None:
    learned = {m.name for m in REGISTRY if m.kind == "perceptual" and m.reference}
    assert set(PERCEPTUAL_METRICS) == learned
    assert {m.name for m in REGISTRY if not m.reference} == {"niqe"}


def test_reading_the_registry_does_not_import_torch() -> None:
    code = "import sys, esrgan.metrics.registry; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


class NoisyNearest(nn.Module):
    """x4 nearest-neighbour upscaling plus fixed noise: a generator every metric must rank below
    MATLAB bicubic on a photo."""

    scale = 4

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # a device and dtype for upscale to read

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = nn.functional.interpolate(x, scale_factor=4, mode="nearest")
        noise = torch.randn(up.shape, generator=torch.Generator().manual_seed(0)) * 0.08
        return (up + noise.to(up)).clamp(0, 1) + self.anchor


@pytest.mark.slow
def test_each_metric_is_computed_as_the_registry_describes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty torch hub cache: no ImageNet trunk. TORCH_HOME, not torch.hub.set_dir, which would
    # pin the hub folder for every later test of the session.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    clear_cache()
    try:
        folder = tmp_path / "hr"
        folder.mkdir()
        write_image(folder / "cat.png", skimage.data.chelsea()[:128, :128])
        report = evaluate_folder(NoisyNearest().eval(), folder, progress=False)
    finally:
        clear_cache()
    worse, better = report["model"]["mean"], report["bicubic"]["mean"]
    assert report["metrics"] == list(names())
    for entry in REGISTRY:
        if entry.imagenet_trunk:
            assert worse[entry.name] is None and "ImageNet" in report["model"]["unavailable"][entry.name]
            continue
        assert np.isfinite(worse[entry.name]) and np.isfinite(better[entry.name]), entry.name
        # Bicubic is the better image: its value lies on the registry's "better" side.
        if entry.lower_is_better:
            assert better[entry.name] < worse[entry.name], entry.name
        else:
            assert better[entry.name] > worse[entry.name], entry.name
