"""ESRGAN networks and their checkpoints."""

from esrgan.models.checkpoints import CheckpointError, infer_config, load_generator, save_generator
from esrgan.models.discriminator import VGGDiscriminator
from esrgan.models.interpolation import interpolate
from esrgan.models.rrdbnet import RRDB, ResidualDenseBlock, RRDBNet

__all__ = [
    "RRDB",
    "CheckpointError",
    "RRDBNet",
    "ResidualDenseBlock",
    "VGGDiscriminator",
    "infer_config",
    "interpolate",
    "load_generator",
    "save_generator",
]
