"""Typed, validated settings of the data steps (one section each of ``params.yaml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ExtractConfig(BaseModel):
    """Cutting HR images into sub-images with matching MATLAB-bicubic LR images.

    The defaults are BasicSR's DIV2K preparation for x4: 480x480 HR sub-images every 240
    pixels (LR 120x120 every 60), a last row/column flush with the border whenever more than
    ``thresh_size`` pixels would otherwise be left over.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    scale: Literal[1, 2, 3, 4, 8] = Field(4, description="Super-resolution factor; LR = imresize(HR, 1/scale).")
    crop_size: int = Field(480, gt=0, le=8192, description="HR sub-image side in pixels; a multiple of scale.")
    step: int = Field(240, gt=0, le=8192, description="Stride between sub-images in HR pixels.")
    thresh_size: int = Field(
        0, ge=0, le=8192, description="Add a border-flush sub-image when more than this many pixels remain."
    )
    min_size: int = Field(
        128,
        gt=0,
        le=8192,
        description="A side shorter than crop_size gets one sub-image covering it if both sides (after mod-crop) reach "
        "min(min_size, crop_size); smaller images are skipped. Keep it at least the training patch size.",
    )
    workers: int = Field(2, ge=1, le=256, description="Processes decoding, resizing and encoding in parallel.")
    patch_limit: int | None = Field(
        None,
        gt=0,
        le=10**9,
        description="At most this many sub-images per image (tiny test configurations); None for all.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ExtractConfig:
        if self.crop_size % self.scale:
            raise ValueError(f"crop_size {self.crop_size} must be a multiple of scale {self.scale}")
        if self.thresh_size >= self.crop_size:
            raise ValueError(f"thresh_size {self.thresh_size} must be smaller than crop_size {self.crop_size}")
        return self
