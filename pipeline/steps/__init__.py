"""The pipeline steps: one function each, called by the ``esrgan stage`` CLI (DVC) and by the
KFP components alike. Paths and validated parameters in; files and a metrics dict out.

Each step runs inside an MLflow run opened by :mod:`pipeline.registry.tracking` and logs into it with
``mlflow`` directly. Steps are not the only MLflow users: the registry commands
(:mod:`pipeline.registry.aliases`), model packaging (:mod:`pipeline.registry.packaging`, :mod:`pipeline.registry.pyfunc_model`)
and the CLI's ``models:/`` loading use it too.

The names below load their module on first use: importing one step must not execute the others'
code, because each ``dvc.yaml`` stage depends on exactly the modules its step imports
(``tests/test_dvc_deps.py`` derives them from the import graph).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOME = {
    "evaluate_bicubic_step": "pipeline.steps.evaluate_bicubic",
    "evaluate_step": "pipeline.steps.evaluate",
    "extract_patches_step": "pipeline.steps.extract_patches",
    "finetune_gan_step": "pipeline.steps.finetune_gan",
    "interpolate_step": "pipeline.steps.interpolate",
    "pretrain_psnr_step": "pipeline.steps.pretrain_psnr",
    "register_step": "pipeline.steps.register",
    "resolve_init_step": "pipeline.steps.resolve_init",
}

if TYPE_CHECKING:
    from pipeline.steps.evaluate import evaluate_step
    from pipeline.steps.evaluate_bicubic import evaluate_bicubic_step
    from pipeline.steps.extract_patches import extract_patches_step
    from pipeline.steps.finetune_gan import finetune_gan_step
    from pipeline.steps.interpolate import interpolate_step
    from pipeline.steps.pretrain_psnr import pretrain_psnr_step
    from pipeline.steps.register import register_step
    from pipeline.steps.resolve_init import resolve_init_step


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "evaluate_bicubic_step",
    "evaluate_step",
    "extract_patches_step",
    "finetune_gan_step",
    "interpolate_step",
    "pretrain_psnr_step",
    "register_step",
    "resolve_init_step",
]
