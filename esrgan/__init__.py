"""ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks, in plain PyTorch.

The core library (models, losses, data, metrics, training, inference) imports nothing from
DVC, Kubeflow Pipelines or MLflow; it is usable on its own from a notebook.
"""

from esrgan.inference import upscale, upscale_tensor
from esrgan.models import RRDBNet, VGGDiscriminator, interpolate, load_generator, save_generator

__version__ = "0.1.0"

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
