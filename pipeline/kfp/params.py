"""How ``params.yaml`` travels through Kubeflow Pipelines: one JSON document plus a few knobs.

The KFP pipeline has a ``params_json`` parameter holding the whole ``params.yaml`` document (its
default is the compiled-in ``params.yaml``) and a handful of *knobs*, individual pipeline
parameters for the values people change most (they show up as fields in the KFP UI).

Merge rule: ``params_json`` carries every key *except* the knobbed ones (the compiled default and
the ``submit``/``run-local`` helpers strip them, see :func:`split_knobs`); the knobs are set into it.
A ``params_json`` that still sets a knobbed key to a different value fails with a message naming
the knob: two answers to one question are an error, not a precedence puzzle. The merged document is validated by :class:`PipelineParams`, the one schema
that ``params.yaml`` and the ``esrgan`` CLI use as well.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.params import (
    MISSING,
    ParamsError,
    PipelineParams,
    get_dotted,
    params_document,
    parse_params,
    pop_dotted,
    set_dotted,
)

#: Knob (KFP pipeline parameter) -> dotted path in ``params.yaml``.
KNOBS: dict[str, str] = {
    "alphas": "interpolate.alphas",  # also drives the ParallelFor, so it is always a knob
    "psnr_iterations": "pretrain_psnr.iterations",
    "gan_iterations": "finetune_gan.iterations",
    "device": "runtime.device",
    "experiment": "tracking.experiment",
    "model_name": "register.model_name",
}


#: GPUs of a training pod when ``runtime.processes`` is ``auto``.
GPUS_PER_TRAINING_TASK = 1


def training_gpus(doc: Mapping[str, Any]) -> int:
    """The ``training_gpus`` pipeline parameter for a ``params.yaml`` document: GPUs per training pod
    (per TrainJob node when ``runtime.nodes`` > 1): ``runtime.processes`` when it is a number, else
    :data:`GPUS_PER_TRAINING_TASK`. The task starts one rank per GPU it gets (``auto``)."""
    runtime = doc.get("runtime")
    processes = runtime.get("processes", "auto") if isinstance(runtime, Mapping) else "auto"
    return processes if isinstance(processes, int) and not isinstance(processes, bool) else GPUS_PER_TRAINING_TASK


def canonical_json(doc: Mapping[str, Any]) -> str:
    """Stable text for a document (sorted keys): compiled defaults and cache keys must not jitter."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def split_knobs(doc: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ``params.yaml`` document -> (the document without the knobbed keys, the knobs' values).

    The compiled ``params_json`` default and the ``submit``/``run-local`` helpers use this, so a
    knob and the JSON never both carry a value.
    """
    rest = copy.deepcopy(dict(doc))
    knobs: dict[str, Any] = {}
    for knob, path in KNOBS.items():
        if (value := pop_dotted(rest, path)) is not MISSING:
            knobs[knob] = value
    return rest, knobs


def params_with_knobs(params_json: str, knobs: Mapping[str, Any]) -> PipelineParams:
    """Merge the knobs into ``params_json`` and validate; raises :class:`ParamsError` on conflict."""
    try:
        doc = json.loads(params_json)
    except json.JSONDecodeError as exc:
        raise ParamsError(f"params_json: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ParamsError("params_json: expected a JSON object")
    for knob, value in knobs.items():
        path = KNOBS[knob]
        current = get_dotted(doc, path, MISSING)
        if current is not MISSING and current != value:
            raise ParamsError(
                f"params_json sets {path} = {current!r} but the pipeline parameter {knob!r} is "
                f"{value!r}; set only {knob} (leave {path} out of params_json)"
            )
        set_dotted(doc, path, value)
    return parse_params(doc, "params_json + pipeline parameters")


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` -> ``(key, value)``; the value is JSON when it parses (numbers, lists), else text."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ParamsError(f"{text!r}: expected key=value")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def apply_overrides(doc: dict[str, Any], overrides: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Dotted ``params.yaml`` overrides (``evaluate.tile=128``) on a copy of ``doc``."""
    out = copy.deepcopy(doc)
    for key, value in overrides:
        set_dotted(out, key, value)
    return out


def pipeline_key(params: PipelineParams, data_spec: Mapping[str, Any], code_version: str = "") -> str:
    """What identifies one execution's inputs: resolved params, the data source and the code version.

    Used as the MLflow parent run key and the checkpoint folder name, so a retried or resubmitted
    run with the same inputs finds both again (see ``pipeline/kfp/dag.py``).
    """
    text = canonical_json({"params": params_document(params), "data": dict(data_spec), "code": code_version})
    return hashlib.sha256(text.encode()).hexdigest()[:16]
