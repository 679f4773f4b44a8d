"""The one configuration schema of the pipeline: ``params.yaml``, the CLI and the KFP parameters.

Each top-level section belongs to one stage (as in DVC's example-get-started) and is validated
by the model of the library that consumes it, so a typo fails before any work starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from esrgan.data.config import ExtractConfig
from esrgan.training.config import (
    GANStageConfig,
    GeneratorConfig,
    LoggingConfig,
    PSNRStageConfig,
    RuntimeConfig,
    TrainConfig,
)


class ParamsError(ValueError):
    """Invalid ``params.yaml``; one line per problem, each naming the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataParams(_Strict):
    """The HR dataset: ``<path>/train`` and ``<path>/val`` (tracked by ``data.dvc``)."""

    path: str = "data"


class InterpolateParams(_Strict):
    """Network interpolation sweep; 0 (PSNR model) and 1 (GAN model) are always evaluated."""

    alphas: list[float] = Field(default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])

    @field_validator("alphas", mode="before")
    @classmethod
    def _written_as_decimals(cls, v: Any) -> Any:
        # DVC names stages and files after the literal YAML value: 1 and 1.0 would differ.
        if isinstance(v, list) and any(isinstance(a, int) and not isinstance(a, bool) for a in v):
            raise ValueError(f"write every alpha as a decimal (0.0, 0.5, 1.0), got {v}")
        return v

    @field_validator("alphas")
    @classmethod
    def _valid(cls, v: list[float]) -> list[float]:
        if any(not 0.0 <= a <= 1.0 for a in v):
            raise ValueError(f"alphas must lie in [0, 1], got {v}")
        if 0.0 not in v or 1.0 not in v:
            raise ValueError("alphas must include the endpoints 0.0 (PSNR model) and 1.0 (GAN model)")
        if len(set(v)) != len(v) or v != sorted(v):
            raise ValueError(f"alphas must be increasing without repeats, got {v}")
        return v


class EvaluateParams(_Strict):
    """Evaluation on the validation split (LR by MATLAB bicubic from the mod-cropped HR)."""

    tile: int = Field(0, ge=0, description="LR tile edge for upscaling (0: whole image)")
    perceptual: bool = Field(True, description="compute NIQE and LPIPS variants (slower)")
    max_images: int | None = Field(None, ge=1, description="evaluate only the first N validation images")


class SelectionParams(_Strict):
    """Which alpha becomes the champion.

    ``best_perceptual_within_margin``: the lowest ``metric`` among alphas whose PSNR-Y is at most
    ``psnr_margin_db`` below the PSNR model's (alpha 0). ``fixed``: exactly ``alpha``.
    """

    rule: Literal["best_perceptual_within_margin", "fixed"] = "best_perceptual_within_margin"
    metric: str = Field("niqe", description="lower-is-better metric key of the evaluation report")
    psnr_margin_db: float = Field(1.0, ge=0)
    alpha: float | None = Field(None, ge=0, le=1)


class RegisterParams(_Strict):
    """Registration of the selected generator in the MLflow model registry."""

    model_name: str = "esrgan-x4"
    alias: str = "champion"
    selection: SelectionParams = Field(default_factory=SelectionParams)
    max_input_pixels: int = Field(1_000_000, ge=1, description="largest request image the served model accepts")
    serve_tile: int = Field(256, ge=0, description="tile edge the served model uses")
    force_promote: bool = Field(
        False, description="make this run's version the champion even when it does not beat the current one"
    )


class TrackingParams(_Strict):
    """MLflow experiment; the server comes from ``MLFLOW_TRACKING_URI`` (default: ./mlflow.db)."""

    experiment: str = "esrgan"


class PipelineParams(_Strict):
    """The whole of ``params.yaml``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    data: DataParams = Field(default_factory=DataParams)
    extract_patches: ExtractConfig = Field(default_factory=ExtractConfig)
    model: GeneratorConfig = Field(default_factory=GeneratorConfig)
    pretrain_psnr: PSNRStageConfig
    finetune_gan: GANStageConfig
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    interpolate: InterpolateParams = Field(default_factory=InterpolateParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    # ``register`` would shadow pydantic's BaseModel.register; the YAML key stays "register".
    registration: RegisterParams = Field(default_factory=RegisterParams, alias="register")
    tracking: TrackingParams = Field(default_factory=TrackingParams)

    def train_config(self) -> TrainConfig:
        """The training library's view of these parameters."""
        return TrainConfig(
            generator=self.model,
            psnr=self.pretrain_psnr,
            gan=self.finetune_gan,
            runtime=self.runtime,
            logging=self.logging,
        )

    def section(self, name: str) -> dict[str, Any]:
        """One section as plain JSON-compatible data (what a stage logs as its params)."""
        return getattr(self, "registration" if name == "register" else name).model_dump(mode="json")


def _format(exc: ValidationError, origin: str) -> str:
    return "; ".join(
        f"{origin}: {'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )


def parse_params(data: Any, origin: str = "params") -> PipelineParams:
    """Validate a mapping into :class:`PipelineParams`."""
    if not isinstance(data, dict):
        raise ParamsError(f"{origin}: expected a mapping at the top level")
    try:
        return PipelineParams.model_validate(data)
    except ValidationError as exc:
        raise ParamsError(_format(exc, origin)) from None


def load_params(path: str | os.PathLike[str] = "params.yaml") -> PipelineParams:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such file") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"{path}: cannot read YAML ({str(exc).splitlines()[0]})") from None
    return parse_params(data, str(path))
