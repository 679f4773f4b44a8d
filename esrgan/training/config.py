"""The training sections of a profile (``params.yaml``, ``configs/params.paper.yaml``), typed.

A profile is one YAML file. Its training sections (``model``, ``pretrain_psnr``, ``finetune_gan``,
``runtime``, ``logging``) are :class:`TrainConfig`; the pipeline's schema
(``pipeline.params.PipelineParams``) extends this class with the pipeline's own sections, so each
field is declared once. Every model forbids unknown keys, so a typo is an error naming the field
instead of a silently ignored setting. :func:`load_config` reads the training sections of a
profile and turns pydantic's report into :class:`ConfigError` with one ``path.to.field: message``
line per problem.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from esrgan.errors import EsrganError


class ConfigError(EsrganError, ValueError):
    """An invalid training configuration; the message lists every problem, one per line."""


#: Upper bounds that no real configuration reaches: a value past them is a typo (``1e32``) that
#: would pass the type check and then crash training, after the run folder was reset.
MAX_WIDTH = 1024
MAX_COUNT = 10**9
#: Seeds must fit NumPy's and the DataLoader workers' 32-bit seeding.
MAX_SEED = 2**32 - 1


class _Strict(BaseModel):
    # NaN and infinity are never a setting: reject them instead of training on them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class GeneratorConfig(_Strict):
    """RRDBNet hyper-parameters (paper: nf 64, 23 blocks, growth 32)."""

    scale: Literal[1, 2, 4, 8] = 4
    in_ch: int = Field(3, ge=1, le=64)
    out_ch: int = Field(3, ge=1, le=64)
    num_feat: int = Field(64, ge=1, le=MAX_WIDTH)
    num_block: int = Field(23, ge=1, le=256)
    num_grow: int = Field(32, ge=1, le=MAX_WIDTH)


class DiscriminatorConfig(_Strict):
    """VGG-style discriminator; its input size is the GAN stage's HR patch size (128 or 256)."""

    num_feat: int = Field(64, ge=1, le=MAX_WIDTH)
    #: Under data parallelism, D's BatchNorm uses the statistics of the global batch (SyncBatchNorm on
    #: CUDA, all-reduces on CPU): N ranks then train the model one process would. Off, each rank
    #: normalises its own share (BasicSR's default; no effect in one process).
    sync_batchnorm: bool = False


class DataConfig(_Strict):
    """Training patches. ``batch_size`` is global: DDP splits it evenly over the ranks."""

    patch_size: int = Field(ge=4, le=4096, description="HR patch edge; the LR patch is patch_size // scale")
    batch_size: int = Field(ge=1, le=4096)
    augment: bool = True
    num_workers: int = Field(
        4, ge=0, le=256, description="DataLoader worker processes (0 loads on the training thread)"
    )
    prefetch_factor: int = Field(2, ge=1, le=64)


class OptimizerConfig(_Strict):
    """Adam."""

    lr: float = Field(gt=0, le=1)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"Adam betas must be in [0, 1), got {v}")
        return v


class ScheduleConfig(_Strict):
    """Learning-rate schedule as a pure function of the iteration (see ``schedule.lr_at``).

    ``multistep``: multiply by ``gamma`` at each milestone; ``step``: every ``step_size``
    iterations; ``cosine``: from lr to ``eta_min`` over the stage; ``constant``.
    """

    kind: Literal["multistep", "step", "cosine", "constant"] = "multistep"
    milestones: list[int] = Field(default_factory=list, max_length=1000)
    step_size: int | None = Field(None, ge=1, le=MAX_COUNT)
    gamma: float = Field(0.5, gt=0, le=1)
    eta_min: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleConfig:
        if any(b <= a for a, b in itertools.pairwise(self.milestones)) or any(m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be positive and strictly increasing, got {self.milestones}")
        if any(m > MAX_COUNT for m in self.milestones):
            raise ValueError(f"milestones must be at most {MAX_COUNT}")
        if self.kind == "step" and self.step_size is None:
            raise ValueError("schedule kind 'step' needs step_size")
        if self.kind == "multistep" and not self.milestones:
            raise ValueError("schedule kind 'multistep' needs milestones (use kind 'constant' for none)")
        return self


class EMAConfig(_Strict):
    """Exponential moving average of G's weights (BasicSR: 0.999; the paper uses none)."""

    enabled: bool = False
    decay: float = Field(0.999, ge=0, lt=1)


class PerceptualConfig(_Strict):
    """Perceptual loss backbone and layers (``esrgan.feature_extractor``)."""

    backbone: str = "vgg19-imagenet"
    #: ``{layer: weight}``; ``None``: the backbone's last conv pre-activation (conv5_4 / conv5_3).
    layers: dict[str, float] | None = None
    allow_download: bool = False


class LossWeights(_Strict):
    """``L_G = perceptual * L_percep + gan * L_G^Ra + pixel * L_1 + chroma * L_chroma``.

    The paper's recipe is ``1, 5e-3, 1e-2, 0``. ``chroma`` weighs L1 between the BT.601 chroma
    of SR and HR (:func:`esrgan.losses.chroma_loss`): it holds colour to HR's and leaves texture
    (luminance) to the perceptual and adversarial terms. The offline CPU demo needs it because
    its perceptual backbone rewards over-saturation (see docs/gan-stage.md).
    """

    perceptual: float = Field(1.0, ge=0)
    gan: float = Field(5e-3, ge=0)
    pixel: float = Field(1e-2, ge=0)
    chroma: float = Field(0.0, ge=0)


class InitConfig(_Strict):
    """Weights a stage starts from instead of random ones (BasicSR's ``pretrain_network_g``).

    ``generator`` names a source: a local file here; the pipeline also resolves ``s3://`` URIs,
    ``https://...#sha256=<hex>`` URLs and registry URIs (``models:/NAME@ALIAS``) to a local file
    before training. ``param_key`` picks the weights inside the file: ``auto`` prefers
    ``params_ema``, then ``params`` (as BasicSR), else names the key (BasicSR's ``param_key_g``).
    """

    generator: str | None = Field(None, min_length=1, max_length=4096)
    param_key: str = Field("auto", min_length=1, max_length=200)


class GANInitConfig(InitConfig):
    """The GAN stage's sources: ``generator`` (default: the PSNR stage's output) and the
    ``discriminator`` (this project's layout or BasicSR's ``VGGStyleDiscriminator``, ``net_d_*.pth``)."""

    discriminator: str | None = Field(None, min_length=1, max_length=4096)


class StageConfig(_Strict):
    """What both stages share. Intervals are in iterations; ``val_every: 0`` disables validation."""

    iterations: int = Field(ge=1, le=MAX_COUNT)
    data: DataConfig
    optimizer: OptimizerConfig
    schedule: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(kind="constant"))
    ema: EMAConfig = Field(default_factory=EMAConfig)
    log_every: int = Field(100, ge=1, le=MAX_COUNT)
    val_every: int = Field(5000, ge=0, le=MAX_COUNT)
    checkpoint_every: int = Field(5000, ge=1, le=MAX_COUNT)


class PSNRStageConfig(StageConfig):
    """Stage 1: L1 only. ``iterations: 0`` with ``init.generator`` makes those weights the PSNR
    model as they are (a released ``RRDB_PSNR_x4.pth``, say); more iterations continue from them."""

    iterations: int = Field(ge=0, le=MAX_COUNT)
    init: InitConfig = Field(default_factory=InitConfig)

    @model_validator(mode="after")
    def _zero_needs_init(self) -> PSNRStageConfig:
        if self.iterations == 0 and self.init.generator is None:
            raise ValueError("iterations 0 means 'the PSNR model is init.generator': set init.generator")
        return self


class GANStageConfig(StageConfig):
    """Stage 2: G from stage 1, D trained every iteration. ``optimizer`` is G's."""

    optimizer_d: OptimizerConfig
    init: GANInitConfig = Field(default_factory=GANInitConfig)
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)
    perceptual: PerceptualConfig = Field(default_factory=PerceptualConfig)
    loss_weights: LossWeights = Field(default_factory=LossWeights)

    @model_validator(mode="after")
    def _d_input(self) -> GANStageConfig:
        from esrgan.models.discriminator import SUPPORTED_INPUT_SIZES

        if self.data.patch_size not in SUPPORTED_INPUT_SIZES:
            raise ValueError(
                f"finetune_gan.data.patch_size is the discriminator's input and must be one of {SUPPORTED_INPUT_SIZES}, "
                f"got {self.data.patch_size}"
            )
        return self


class RuntimeConfig(_Strict):
    """Where and how to run."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: Mixed precision (autocast): ``auto`` is bf16 where the device computes it natively, else
    #: fp32; ``fp16`` applies on CUDA only (see ``esrgan.training.loop.amp_dtype_for``).
    amp: Literal["none", "auto", "bf16", "fp16"] = "none"
    #: NHWC tensors: ``auto`` uses them where measured faster, i.e. under bf16 autocast on CPU
    #: (oneDNN's bf16 kernels work in NHWC: a GAN iteration took ~19% less time); ``true`` everywhere.
    channels_last: Literal["auto"] | bool = "auto"
    #: ``torch.use_deterministic_algorithms`` (slower on CUDA; exact resume on CPU needs it).
    deterministic: bool = False
    seed: int = Field(0, ge=0, le=MAX_SEED)
    #: CPU threads for torch (None: torch's default).
    threads: int | None = Field(None, ge=1, le=1024)
    #: PSNR stage on CPU: split each batch over this many threads, each training its slice with
    #: one intra-op thread (``esrgan.training.thread_shards``); ``auto`` = the thread count. Off
    #: (1) on CUDA, under DDP, in deterministic runs and in the GAN stage (BatchNorm in D).
    thread_shards: Literal["auto"] | int = "auto"
    #: Training processes per node for launchers (the pipeline runs that many under torchrun):
    #: ``auto`` = the visible GPUs (1 on CPU). The loop itself uses the world size torchrun gives it;
    #: the batch is global, so the count changes no result beyond float rounding.
    processes: Literal["auto"] | int = "auto"
    #: Nodes (pods) per training stage, for launchers (Kubeflow: > 1 runs a TrainJob).
    nodes: int = Field(1, ge=1, le=1024)

    @field_validator("processes", "thread_shards", mode="before")
    @classmethod
    def _auto_or_count(cls, v: Any) -> Any:
        # One message instead of pydantic's one per member of the union.
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024):
            return v
        raise ValueError(f"expected auto or a whole number from 1 to 1024, got {str(v)[:60]}")

    @field_validator("channels_last", mode="before")
    @classmethod
    def _auto_or_bool(cls, v: Any) -> Any:
        if v == "auto" or isinstance(v, bool):
            return v
        raise ValueError(f"expected auto, true or false, got {str(v)[:60]}")


class LoggingConfig(_Strict):
    """Run outputs shared by both stages."""

    keep_checkpoints: int = Field(3, ge=1, le=10_000)
    num_samples: int = Field(3, ge=0, le=1000, description="validation images saved as LR-bicubic | SR | HR crops")
    sample_crop: int = Field(128, ge=8, le=8192, description="HR edge of each sample crop")
    val_tile: int = Field(0, ge=0, le=8192, description="LR tile edge for validation upscaling (0: whole image)")
    progress_bar: bool = True


#: The two training stages (``esrgan train psnr|gan``) and the profile section each one reads.
STAGE_SECTIONS: dict[str, str] = {"psnr": "pretrain_psnr", "gan": "finetune_gan"}


class TrainConfig(_Strict):
    """A complete two-stage ESRGAN training configuration: the training sections of a profile."""

    model: GeneratorConfig = Field(default_factory=GeneratorConfig)
    pretrain_psnr: PSNRStageConfig
    finetune_gan: GANStageConfig
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _patches_fit_scale(self) -> TrainConfig:
        for name in STAGE_SECTIONS.values():
            patch = getattr(self, name).data.patch_size
            if patch % self.model.scale:
                raise ValueError(f"{name}.data.patch_size {patch} is not a multiple of scale {self.model.scale}")
        return self

    def stage(self, stage: str) -> PSNRStageConfig | GANStageConfig:
        """The section of ``stage`` (``"psnr"`` or ``"gan"``)."""
        section: PSNRStageConfig | GANStageConfig = getattr(self, STAGE_SECTIONS[stage])
        return section

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (stored in checkpoints, logged as parameters)."""
        return self.model_dump(mode="json")


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{origin}: {loc}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, origin: str = "config") -> TrainConfig:
    """Validate a dict (e.g. from YAML, or a :class:`TrainConfig` passed through) into a config."""
    if isinstance(data, TrainConfig):
        return data
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from None


def load_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read and validate the training sections of a profile; ``overrides`` are deep-merged on top first.

    The profile's other sections (``data``, ``evaluate``, ...) belong to the pipeline, which
    validates them (``pipeline.params.load_params``); they are not read here. Mappings merge key by
    key (so ``{"finetune_gan": {"perceptual": {"layers": {...}}}}`` *adds* layers to the file's);
    other values replace.
    """
    from esrgan.yaml_file import YamlFileError, read_yaml

    path = Path(path)
    try:
        data = read_yaml(path)
    except (FileNotFoundError, YamlFileError) as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    training = {key: value for key, value in data.items() if key in TrainConfig.model_fields}
    return parse_config(_deep_merge(training, overrides or {}), str(path))


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
