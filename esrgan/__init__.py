"""ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks, in plain PyTorch.

The core library (models, losses, data, metrics, training, inference) imports nothing from
DVC, Kubeflow Pipelines or MLflow; it is usable on its own from a notebook.

The names below are imported on first use, so ``import esrgan.engines`` (NumPy and a runtime,
for a serving image without torch) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from esrgan.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from esrgan.inference import upscale, upscale_tensor
    from esrgan.models import RRDBNet, VGGDiscriminator, interpolate, load_generator, save_generator

__version__ = "0.1.0"

_LAZY = {
    "upscale": "esrgan.inference",
    "upscale_tensor": "esrgan.inference",
    "RRDBNet": "esrgan.models",
    "VGGDiscriminator": "esrgan.models",
    "interpolate": "esrgan.models",
    "load_generator": "esrgan.models",
    "save_generator": "esrgan.models",
}

__all__ = [
    "RRDBNet",
    "VGGDiscriminator",
    "__version__",
    "interpolate",
    "load_generator",
    "save_generator",
    "upscale",
    "upscale_tensor",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
