"""The one configuration schema of the pipeline: ``params.yaml``, the CLI and the KFP parameters.

Each top-level section belongs to one stage (as in DVC's example-get-started) and is validated
by the model of the library that consumes it, so a typo fails before any work starts. Every
model forbids unknown keys. :func:`parse_params` also checks what no single section can (scales
agree, the selection rule fits the sweep and the evaluated metrics) and lists *every* problem, one
line each, in one :class:`ParamsError`: a user fixes the file once, not once per run.

To add a parameter: add the field to the section's model (``extra="forbid"`` comes with it); add a
cross-field check to :func:`cross_field_problems` only if it relates two sections.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from esrgan.data.config import ExtractConfig
from esrgan.metrics.registry import metric as metric_info
from esrgan.metrics.registry import names, selection_names
from esrgan.training.config import TrainConfig
from esrgan.yaml_file import YamlFileError, read_yaml
from pipeline.errors import ParamsError

__all__ = [
    "METRIC_DIRECTION",
    "ParamsError",
    "PipelineParams",
    "cross_field_problems",
    "load_params",
    "load_params_document",
    "params_document",
    "parse_params",
]

# Every list of metric names below derives from esrgan.metrics.registry, where each is described once.
#: Report metrics the selection rule can use, and which way is better ("min": lower is better).
METRIC_DIRECTION: dict[str, Literal["min", "max"]] = {
    name: "min" if metric_info(name).lower_is_better else "max" for name in selection_names()
}
#: Metrics ``evaluate`` computes with ``perceptual: false``.
FIDELITY_METRICS = names("fidelity")
if TYPE_CHECKING:  # a Literal built at run time is not a static type; mypy sees plain strings
    MetricName = str
    SelectionMetric = str
else:
    #: Every metric an evaluation report can hold, in report order (what evaluate.skip_metrics allows).
    MetricName = Literal[names()]
    #: The metrics that may rank the alphas (what register.selection.metric allows).
    SelectionMetric = Literal[selection_names()]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DataParams(_Strict):
    """The HR dataset: ``<path>/train`` and ``<path>/val`` (tracked by ``data.dvc``)."""

    path: str = Field("data", min_length=1, max_length=4096)


class InterpolateParams(_Strict):
    """Network interpolation sweep; 0 (PSNR model) and 1 (GAN model) are always evaluated."""

    alphas: list[float] = Field(default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], max_length=101)

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

    tile: int = Field(0, ge=0, le=8192, description="LR tile edge for upscaling (0: whole image)")
    perceptual: bool = Field(True, description="compute NIQE and LPIPS variants (slower)")
    skip_metrics: list[MetricName] = Field(
        default_factory=list, description="metrics not to compute (not psnr_y, nor the selection metric)"
    )
    max_images: int | None = Field(None, ge=1, le=10**9, description="evaluate only the first N validation images")


class SelectionParams(_Strict):
    """How the sweep picks its alpha (registered as the challenger; see :mod:`pipeline.steps.selection`).

    ``best_perceptual_within_margin``: the best ``metric`` (lowest or highest, as METRIC_DIRECTION
    says) among alphas whose PSNR-Y is at most ``psnr_margin_db`` below the PSNR model's (alpha 0).
    ``fixed``: exactly ``alpha``.
    """

    rule: Literal["best_perceptual_within_margin", "fixed"] = "best_perceptual_within_margin"
    # The direction comes from METRIC_DIRECTION (psnr_y: higher is better, niqe: lower), never assumed.
    metric: SelectionMetric = Field(
        "niqe", description="evaluation-report metric that ranks the eligible alphas (direction: METRIC_DIRECTION)"
    )
    psnr_margin_db: float = Field(1.0, ge=0, le=100)
    alpha: float | None = Field(None, ge=0, le=1)


class RegisterParams(_Strict):
    """Registration of the selected generator in the MLflow model registry."""

    model_name: str = Field("esrgan-x4", min_length=1, max_length=256, pattern=r"^[^/:@\s][^/:@]*$")
    # MLflow reserves "latest" and version-like aliases ("v3"); keep to a plain identifier.
    alias: str = Field("champion", pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$")
    selection: SelectionParams = Field(default_factory=SelectionParams)
    max_input_pixels: int = Field(
        1_000_000, ge=1, le=2**31, description="largest request image the served model accepts"
    )
    serve_tile: int = Field(256, ge=0, le=8192, description="tile edge the served model uses")

    @field_validator("alias")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v.lower() == "latest" or (v[:1] in "vV" and v[1:].isdigit()):
            raise ValueError(f"{v!r} is reserved by MLflow (latest, v<number>); choose another alias")
        return v

    force_promote: bool = Field(
        False, description="make this run's version the champion even when it does not beat the current one"
    )


class TrackingParams(_Strict):
    """MLflow experiment; the server comes from ``MLFLOW_TRACKING_URI`` (default: ./mlflow.db)."""

    experiment: str = Field("esrgan", min_length=1, max_length=500)


#: ``runtime`` keys that say how a training stage is launched, not what it computes: checkpoints
#: written with one count resume with another, so they are not in a run folder's fingerprint.
LAUNCH_KEYS = ("processes", "nodes", "thread_shards")


class PipelineParams(TrainConfig):
    """The whole of a profile (``params.yaml``): the training sections (:class:`TrainConfig`,
    declared there once) and the pipeline's own."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True, allow_inf_nan=False)

    data: DataParams = Field(default_factory=DataParams)
    extract_patches: ExtractConfig = Field(default_factory=ExtractConfig)
    interpolate: InterpolateParams = Field(default_factory=InterpolateParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    # ``register`` would shadow pydantic's BaseModel.register; the YAML key stays "register".
    registration: RegisterParams = Field(default_factory=RegisterParams, alias="register")
    tracking: TrackingParams = Field(default_factory=TrackingParams)

    def train_config(self) -> TrainConfig:
        """The training library's view of these parameters (the training sections only)."""
        return TrainConfig.model_validate(self.model_dump(include=set(TrainConfig.model_fields)))

    def section(self, name: str) -> dict[str, Any]:
        """One section as plain JSON-compatible data (what a stage logs as its params)."""
        section: BaseModel = getattr(self, "registration" if name == "register" else name)
        return section.model_dump(mode="json")


def _show(value: Any, limit: int = 60) -> str:
    """A value from the user's file, as one short line (keys and values may hold any character)."""
    text = str(value)
    if not text.isprintable():
        text = repr(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join("register" if part == "registration" else _show(part) for part in loc) or "(top level)"


def _field_problems(exc: ValidationError) -> list[str]:
    out = []
    for e in exc.errors():
        msg = _show(e["msg"].removeprefix("Value error, "), limit=300)
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a parameter here; check the spelling)"
        out.append(f"{_loc(e['loc'])}: {msg}")
    return out


class _Missing:
    """No value at a dotted key (``None`` is a value a document may hold)."""


MISSING = _Missing()
_REQUIRED = _Missing()


def get_dotted(doc: Any, dotted: str, default: Any = _REQUIRED) -> Any:
    """``get_dotted(d, "a.b")`` -> ``d["a"]["b"]``; ``default`` when a key on the way is absent
    (without a default: :class:`KeyError` naming the dotted key)."""
    node = doc
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is _REQUIRED:
                raise KeyError(dotted)
            return default
        node = node[part]
    return node


def set_dotted(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_dotted(d, "a.b", 1)`` -> ``d["a"]["b"] = 1`` (creating mappings on the way)."""
    *parents, leaf = dotted.split(".")
    node = doc
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ParamsError(f"{dotted}: {part!r} is not a section")
        node = child
    node[leaf] = value


def pop_dotted(doc: dict[str, Any], dotted: str) -> Any:
    """Remove and return ``doc``'s value at ``dotted``; :data:`MISSING` when there is none."""
    *parents, leaf = dotted.split(".")
    node = get_dotted(doc, ".".join(parents), None) if parents else doc
    return node.pop(leaf) if isinstance(node, dict) and leaf in node else MISSING


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def cross_field_problems(data: dict[str, Any]) -> list[str]:
    """Contradictions between sections, read from the raw document (so they are reported even
    when a field of another section is invalid). Absent keys take the schema's defaults."""
    problems = []
    defaults = {"model.scale": 4, "extract_patches.scale": 4}
    model_scale = get_dotted(data, "model.scale", defaults["model.scale"])
    extract_scale = get_dotted(data, "extract_patches.scale", defaults["extract_patches.scale"])
    if model_scale != extract_scale:
        problems.append(
            f"extract_patches.scale ({_show(extract_scale)}) differs from model.scale ({_show(model_scale)}): "
            "the patches must be cut for the scale the generator is trained for"
        )
    alphas = get_dotted(data, "interpolate.alphas", InterpolateParams().alphas)
    numbers = [_number(a) for a in alphas] if isinstance(alphas, list) else []
    selection = get_dotted(data, "register.selection", {})
    selection = selection if isinstance(selection, dict) else {}
    rule = selection.get("rule", "best_perceptual_within_margin")
    alpha = selection.get("alpha")
    if rule == "fixed":
        if alpha is None:
            problems.append("register.selection.alpha: rule 'fixed' needs an alpha (one of interpolate.alphas)")
        elif (
            _number(alpha) is not None
            and numbers
            and not any(n is not None and abs(n - float(alpha)) < 1e-9 for n in numbers)
        ):
            problems.append(
                f"register.selection.alpha ({_show(alpha)}) is not among interpolate.alphas {_show(alphas)}: "
                "a fixed pick must be one of the swept alphas"
            )
    elif alpha is not None:
        problems.append(
            f"register.selection.alpha ({_show(alpha)}) is set but only rule 'fixed' uses it; set it to null"
        )
    problems += batch_split_problems(data)
    metric = selection.get("metric", "niqe")
    metric = metric if isinstance(metric, str) else None  # a wrong type is the field check's to report
    skipped = get_dotted(data, "evaluate.skip_metrics", [])
    for name in ("psnr_y", metric) if isinstance(skipped, list) else ():
        if name in skipped:
            why = "the selection rule's margin is in PSNR-Y" if name == "psnr_y" else "it is register.selection.metric"
            problems.append(f"evaluate.skip_metrics lists {name}, which every evaluation needs: {why}")
            break
    if (
        get_dotted(data, "evaluate.perceptual", True) is False
        and metric in METRIC_DIRECTION
        and (metric not in FIDELITY_METRICS)
    ):
        problems.append(
            f"register.selection.metric ({metric}) is not computed with evaluate.perceptual: false; "
            f"use one of {', '.join(FIDELITY_METRICS)} or enable evaluate.perceptual"
        )
    return problems


def batch_split_problems(data: dict[str, Any], processes: int | None = None) -> list[str]:
    """Each training stage's global batch must split evenly over the ranks (processes x nodes).

    ``processes`` None: ``runtime.processes`` of ``data`` when it is a number (``auto`` is checked
    when it is resolved, by :func:`pipeline.torchrun.stage_processes`).
    """
    if processes is None:
        processes = get_dotted(data, "runtime.processes", "auto")
    nodes = get_dotted(data, "runtime.nodes", 1)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in (processes, nodes)):
        return []  # "auto", or a wrong type the field check reports
    world = processes * nodes
    problems = []
    for section in ("pretrain_psnr", "finetune_gan"):
        batch = get_dotted(data, f"{section}.data.batch_size", None)
        if isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1 and batch % world:
            problems.append(
                f"{section}.data.batch_size ({batch}) is the global batch and must split evenly over "
                f"{world} training processes (runtime.processes {processes} x runtime.nodes {nodes})"
            )
    return problems


#: ``model: auto``: the architecture is read from the init generator (a released file, the champion).
AUTO_MODEL = "auto"


def _auto_model(data: dict[str, Any], origin: str) -> dict[str, int]:
    from pipeline.data.init_sources import InitSourceError, auto_model

    try:
        return auto_model(data, Path.cwd())
    except InitSourceError as exc:
        raise ParamsError(f"{origin}: model: auto: {exc}") from None


def parse_params(data: Any, origin: str = "params") -> PipelineParams:
    """Validate a whole ``params.yaml`` document; :class:`ParamsError` lists every problem, one per line.

    ``model: auto`` is replaced by the architecture of the init generator, read from its file.
    """
    if not isinstance(data, dict):
        raise ParamsError(f"{origin}: expected a mapping at the top level")
    if data.get("model") == AUTO_MODEL:
        data = {**data, "model": _auto_model(data, origin)}
    problems: list[str] = []
    params = None
    try:
        params = PipelineParams.model_validate(data)
    except ValidationError as exc:
        problems += _field_problems(exc)
    problems += cross_field_problems(data)
    if problems:
        raise ParamsError([f"{origin}: {p}" for p in problems])
    assert params is not None
    return params


def _read(path: Path) -> Any:
    try:
        return read_yaml(path)
    except (FileNotFoundError, YamlFileError) as exc:
        raise ParamsError(str(exc)) from None


def load_params(path: str | os.PathLike[str] = "params.yaml") -> PipelineParams:
    """Read and validate ``params.yaml`` (see :func:`parse_params`)."""
    path = Path(path)
    return parse_params(_read(path), str(path))


def params_document(params: PipelineParams) -> dict[str, Any]:
    """The YAML-shaped document of validated params (``register``, not ``registration``)."""
    return params.model_dump(mode="json", by_alias=True)


def load_params_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The document of a valid ``params.yaml`` as written (what KFP compiles in), validated first."""
    path = Path(path)
    doc = _read(path)
    parse_params(doc, str(path))
    return dict(doc)
