"""What the KFP component bodies share: the resolved configuration artifact and KFP metrics.

The first task writes one JSON *config* artifact (validated params, pipeline key, data source);
every later task opens it here, which also adopts the execution's MLflow parent run. Kept out of
the component bodies so that each body stays a few lines calling its step function.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, TypedDict

from esrgan.fileio import write_json
from pipeline.kfp.parent_run import adopt_parent_run
from pipeline.params import PipelineParams, parse_params
from pipeline.steps.context import StepContext

#: A ``Model`` artifact is a folder holding this file: the generator loaders read the format from
#: the suffix, and KFP artifact paths have none.
GENERATOR_FILE = "generator.pth"


class StepConfig(TypedDict):
    """The config artifact's document."""

    params: dict[str, Any]  # the validated params.yaml document
    key: str  # the pipeline key: names the checkpoint folder, tags the MLflow parent run
    data: dict[str, Any]  # the data source (DataSource.as_dict())


class MetricsArtifact(Protocol):
    """What :func:`log_metrics` needs of KFP's ``Metrics`` artifact (KFP ships no types)."""

    def log_metric(self, metric: str, value: float) -> None: ...


def write_config(path: str | Path, params: PipelineParams, key: str, data: Mapping[str, Any]) -> Path:
    """The config artifact: ``{"params": <params.yaml document>, "key": ..., "data": {...}}``."""
    from pipeline.params import params_document

    return write_json(path, {"params": params_document(params), "key": key, "data": dict(data)})


def read_config(path: str | Path) -> StepConfig:
    config: StepConfig = json.loads(Path(path).read_text(encoding="utf-8"))  # written by write_config
    return config


def open_step(config_path: str | Path, tags: Mapping[str, str] | None = None) -> tuple[StepContext, StepConfig]:
    """Validated params and MLflow for one task, nested under this execution's parent run.

    The project root is the working directory: the image's ``WORKDIR`` in a cluster, the caller's
    directory with ``esrgan kfp run-local``. MLflow comes from ``MLFLOW_TRACKING_URI`` (a secret in a cluster).
    """
    config = read_config(config_path)
    ctx = StepContext.from_params(Path.cwd(), parse_params(config["params"], "config artifact"))
    adopt_parent_run(ctx, config["key"], {k: v for k, v in (tags or {}).items() if v})
    return ctx, config


def generator_file(artifact_path: str | Path) -> Path:
    """The generator inside a ``Model`` artifact folder (created for outputs)."""
    folder = Path(artifact_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / GENERATOR_FILE


def log_metrics(artifact: MetricsArtifact, metrics: Mapping[str, Any], prefix: str = "") -> None:
    """Numbers of a step's metrics dict into a KFP ``Metrics`` artifact (``None``/text skipped)."""
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        artifact.log_metric(f"{prefix}{key}", float(value))
