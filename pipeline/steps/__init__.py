"""The pipeline steps: one function each, called by the ``esrgan stage`` CLI (DVC) and by the
KFP components alike. Paths and validated parameters in; files and a metrics dict out.

Steps are the only layer that talks to MLflow (through :mod:`pipeline.tracking`).
"""

from pipeline.steps.evaluate import evaluate_step
from pipeline.steps.extract import extract_patches_step
from pipeline.steps.interpolate import interpolate_step
from pipeline.steps.register import register_step
from pipeline.steps.train import finetune_gan_step, pretrain_psnr_step

__all__ = [
    "evaluate_step",
    "extract_patches_step",
    "finetune_gan_step",
    "interpolate_step",
    "pretrain_psnr_step",
    "register_step",
]
