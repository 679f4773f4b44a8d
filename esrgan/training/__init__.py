"""ESRGAN training: PSNR pre-training, GAN fine-tuning, checkpoints/resume, DDP.

Entry points (see :mod:`esrgan.training.loop` for the outputs each writes)::

    cfg = load_config("params.yaml")   # the training sections of a profile
    psnr = train_psnr(cfg, hr, lr, val_hr, val_lr, "runs/psnr")
    gan = train_gan(cfg, hr, lr, val_hr, val_lr, "runs/gan", init_generator=psnr.final_generator_path)
    esrgan.models.interpolate_sweep(psnr.final_generator_path, gan.final_generator_path, [0, 0.5, 1], "runs/interp")

The core never imports a tracker: pass :class:`Callbacks` to observe logs, validations and
checkpoints.
"""

from esrgan.training.callbacks import CallbackList, Callbacks
from esrgan.training.config import (
    ConfigError,
    DataConfig,
    EMAConfig,
    GANStageConfig,
    GeneratorConfig,
    LoggingConfig,
    LossWeights,
    OptimizerConfig,
    PerceptualConfig,
    PSNRStageConfig,
    RuntimeConfig,
    ScheduleConfig,
    TrainConfig,
    load_config,
    parse_config,
)
from esrgan.training.loop import TrainResult, train, train_gan, train_psnr
from esrgan.training.preemption import PREEMPTED_EXIT_CODE, TrainingPreempted
from esrgan.training.resume import latest_checkpoint, load_checkpoint
from esrgan.training.schedule import lr_at

__all__ = [
    "PREEMPTED_EXIT_CODE",
    "CallbackList",
    "Callbacks",
    "ConfigError",
    "DataConfig",
    "EMAConfig",
    "GANStageConfig",
    "GeneratorConfig",
    "LoggingConfig",
    "LossWeights",
    "OptimizerConfig",
    "PSNRStageConfig",
    "PerceptualConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingPreempted",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "lr_at",
    "parse_config",
    "train",
    "train_gan",
    "train_psnr",
]
