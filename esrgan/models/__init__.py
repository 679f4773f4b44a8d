"""ESRGAN networks and their checkpoints."""

from esrgan.models.checkpoints import CheckpointError, infer_config, load_generator, save_generator
from esrgan.models.discriminator import VGGDiscriminator
from esrgan.models.interpolation import alpha_filename, interpolate, interpolate_sweep, write_interpolated
from esrgan.models.rrdbnet import RRDB, ResidualDenseBlock, RRDBNet

__all__ = [
    "RRDB",
    "CheckpointError",
    "RRDBNet",
    "ResidualDenseBlock",
    "VGGDiscriminator",
    "alpha_filename",
    "infer_config",
    "interpolate",
    "interpolate_sweep",
    "load_generator",
    "save_generator",
    "write_interpolated",
]
