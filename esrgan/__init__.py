"""ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks, in plain PyTorch.

The core library (models, losses, data, metrics, training, inference) imports nothing from
DVC, Kubeflow Pipelines or MLflow; it is usable on its own from a notebook.

The names below are imported on first use, so ``import esrgan.engines`` (NumPy and a runtime,
for a serving image without torch) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once imported, a plain attribute
        return value
    raise AttributeError(f"module 'esrgan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
