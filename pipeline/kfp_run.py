"""Running the KFP pipeline: locally with ``kfp.local`` or on a cluster with ``kfp.Client``.

Both build the pipeline arguments the same way: a params file (or the compiled defaults) split
into ``params_json`` and knobs, then ``key=value`` overrides where ``key`` is either a pipeline
parameter (``gan_iterations=5000``, ``data_rev=v2``) or a dotted ``params.yaml`` key
(``evaluate.tile=128``; a knobbed key such as ``interpolate.alphas`` goes to its knob).
"""

from __future__ import annotations

import builtins
import contextlib
import gc
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.kfp_params import KNOBS, apply_overrides, canonical_json, parse_override, split_knobs
from pipeline.params import ParamsError, parse_params

PATH_TO_KNOB = {path: knob for knob, path in KNOBS.items()}


def compiled_defaults(package: Path) -> dict[str, Any]:
    """The pipeline parameters and their defaults as compiled into ``package`` (``pipeline.yaml``)."""
    spec = next(yaml.safe_load_all(package.read_text(encoding="utf-8")))  # 2nd document: platform spec
    params = spec["root"]["inputDefinitions"]["parameters"]
    return {name: p.get("defaultValue") for name, p in params.items()}


def build_arguments(
    parameter_names: Iterable[str],
    overrides: Iterable[str],
    params_doc: Mapping[str, Any] | None = None,
    compiled_params_json: str | None = None,
) -> dict[str, Any]:
    """Pipeline arguments from a params document and ``key=value`` overrides.

    ``params_doc`` (a whole ``params.yaml``) sets ``params_json`` and every knob. Without it,
    dotted overrides apply to ``compiled_params_json`` and only what was overridden is sent.
    """
    names = set(parameter_names)
    args: dict[str, Any] = {}
    doc: dict[str, Any] | None = dict(params_doc) if params_doc is not None else None
    dotted: list[tuple[str, Any]] = []
    for text in overrides:
        key, value = parse_override(text)
        if key in PATH_TO_KNOB:
            args[PATH_TO_KNOB[key]] = value
        elif "." in key:
            dotted.append((key, value))
        elif key in names:
            args[key] = value
        else:
            raise ParamsError(
                f"{key!r}: neither a pipeline parameter ({', '.join(sorted(names))}) nor a dotted params.yaml key"
            )
    if doc is None and dotted:
        if compiled_params_json is None:
            raise ParamsError("dotted overrides need --params or a compiled params_json default")
        doc = json.loads(compiled_params_json)
    if doc is not None:
        rest, knobs = split_knobs(apply_overrides(doc, dotted))
        args = {"params_json": canonical_json(rest), **knobs, **args}
    return args


def load_params_doc(params_file: Path) -> dict[str, Any]:
    doc = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    parse_params(doc, str(params_file))
    return doc


@contextlib.contextmanager
def print_restored() -> Iterator[None]:
    """Put back ``builtins.print`` after a ``kfp.local`` run.

    kfp.local indents each task's log by swapping ``builtins.print`` in and out around the task
    (``kfp.local.logging_utils.indented_print``). After this pipeline (a ParallelFor) its indenting
    print is sometimes still installed when the run returns (one run in two, measured), so every
    later ``print`` in the process starts with four spaces: a manifest that ``esrgan deploy
    kserve`` prints in the same process no longer parses.
    """
    original = builtins.print
    try:
        yield
    finally:
        gc.collect()  # kfp's context managers left in unfinished generators restore *their* print on collection
        builtins.print = original


def run_local(params_file: Path, data_dir: Path, workdir: Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The whole pipeline in this Python environment (``SubprocessRunner(use_venv=False)``).

    Every task is a subprocess of this interpreter running the same component code as in the
    cluster; the Kubernetes settings (GPUs, secrets, volume) are ignored. MLflow is whatever
    ``MLFLOW_TRACKING_URI`` says, else ``./mlflow.db`` as for ``dvc repro``. Returns the
    registration record (also written to ``<workdir>/registered.json``).
    """
    from kfp import local

    from components.build import Images
    from pipeline.kfp_dag import build_pipeline

    pipeline = build_pipeline(Images.for_version(), params_file)
    names = pipeline.component_spec.inputs or {}
    args = build_arguments(names, overrides, params_doc=load_params_doc(params_file))
    args.update(
        data_source="local",
        data_uri=str(data_dir.resolve()),
        data_rev="",
        checkpoint_root=str((workdir / "checkpoints").resolve()),
    )
    workdir.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str((workdir / "artifacts").resolve()),
        raise_on_error=True,
    )
    with print_restored():
        task = pipeline(**args)
    record = json.loads(task.output)
    (workdir / "registered.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def submit(
    host: str,
    package: Path,
    overrides: Iterable[str] = (),
    params_file: Path | None = None,
    experiment: str = "esrgan",
    run_name: str | None = None,
    namespace: str | None = None,
    enable_caching: bool | None = None,
) -> str:
    """Create a run of the compiled ``package`` on the KFP API at ``host``; returns the run id.

    A bearer token, when the endpoint needs one, comes from ``KFP_TOKEN`` (never the command line).
    """
    import kfp

    defaults = compiled_defaults(package)
    doc = load_params_doc(params_file) if params_file is not None else None
    args = build_arguments(defaults, overrides, params_doc=doc, compiled_params_json=defaults.get("params_json"))
    client = kfp.Client(host=host, namespace=namespace, existing_token=os.environ.get("KFP_TOKEN") or None)
    result = client.create_run_from_pipeline_package(
        str(package),
        arguments=args,
        run_name=run_name,
        experiment_name=experiment,
        namespace=namespace,
        enable_caching=enable_caching,
    )
    return str(result.run_id)
