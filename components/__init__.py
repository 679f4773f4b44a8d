"""The KFP components, re-exported for the design card's top-level ``components/``.

They live in :mod:`pipeline.kfp.components` (one module per step), beside the DAG that wires them;
this package only names them, so ``from components import pretrain_psnr`` keeps working.
"""

from pipeline.images import DEFAULT_REPOSITORY
from pipeline.kfp.components.evaluate import evaluate
from pipeline.kfp.components.extract_patches import extract_patches
from pipeline.kfp.components.finetune_gan import finetune_gan
from pipeline.kfp.components.interpolate import interpolate
from pipeline.kfp.components.pretrain_psnr import pretrain_psnr
from pipeline.kfp.components.register import register
from pipeline.kfp.components.resolve_params import resolve_params

__all__ = [
    "DEFAULT_REPOSITORY",
    "evaluate",
    "extract_patches",
    "finetune_gan",
    "interpolate",
    "pretrain_psnr",
    "register",
    "resolve_params",
]
