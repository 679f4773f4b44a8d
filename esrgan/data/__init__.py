"""The data layer: MATLAB-bicubic resizing, HR datasets, sub-image extraction, paired datasets.

Typical flow::

    build_sample_dataset("data/sample")            # or import_dataset(...), download_div2k(...)
    extract_patches("data/sample/train", "data/patches")
    extract_validation("data/sample/val", "data/val")
    train = PairedPatchDataset("data/patches/hr", "data/patches/lr", patch_size=128, scale=4)
    val = PairedImageDataset("data/val/hr", "data/val/lr")
"""

from esrgan.data.config import ExtractConfig
from esrgan.data.convert import mod_crop, to_rgb8
from esrgan.data.dataset import PairedImageDataset, PairedPatchDataset, augment_pair
from esrgan.data.div2k import DownloadError, download_div2k
from esrgan.data.imresize import imresize
from esrgan.data.layout import MANIFEST_FILE, SPLITS_FILE, TRAIN_DIR, VAL_DIR, list_images
from esrgan.data.patches import crop_positions, extract_patches, extract_validation, extract_with_config
from esrgan.data.sample import (
    HOLDOUT_SOURCES,
    SAMPLE_SOURCES,
    SampleSourceError,
    build_holdout_set,
    build_sample_dataset,
    import_dataset,
)

__all__ = [
    "HOLDOUT_SOURCES",
    "MANIFEST_FILE",
    "SAMPLE_SOURCES",
    "SPLITS_FILE",
    "TRAIN_DIR",
    "VAL_DIR",
    "DownloadError",
    "ExtractConfig",
    "PairedImageDataset",
    "PairedPatchDataset",
    "SampleSourceError",
    "augment_pair",
    "build_holdout_set",
    "build_sample_dataset",
    "crop_positions",
    "download_div2k",
    "extract_patches",
    "extract_validation",
    "extract_with_config",
    "import_dataset",
    "imresize",
    "list_images",
    "mod_crop",
    "to_rgb8",
]
