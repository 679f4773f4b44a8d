"""The MLflow parent run of one Kubeflow Pipelines execution, found again by a key.

Every KFP task is its own pod, so the parent cannot live in a process. Each task calls
:func:`adopt_parent_run` with the execution's *pipeline key* (a hash of the resolved params and
the data source, computed once by the first task): it finds the ``RUNNING`` parent with that key
or creates it, and exports its id as ``ESRGAN_PIPELINE_RUN_ID`` so the unchanged step functions
nest their child runs under it. The registration step finishes it.

Keying on the inputs (not on the KFP run id) keeps the cheap tasks' inputs identical across
submissions, so KFP's cache can hit, and a resubmission after a failure adopts the failed run's
parent and its checkpoints: the same rule the DVC path applies with its git/data/params key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from mlflow.tracking import MlflowClient

from pipeline.registry.tracking import PARENT_RUN_ENV, TAG_LAUNCHER, find_or_create_parent, provenance_tags
from pipeline.steps.context import StepContext


def adopt_parent_run(ctx: StepContext, key: str, tags: Mapping[str, str] | None = None) -> str:
    """Find or create the running parent for ``key``; export it for this process; returns its id."""
    base = {**provenance_tags(ctx.tracking.root), TAG_LAUNCHER: "kubeflow"}
    run_id, _ = find_or_create_parent(ctx.tracking, key, base, run_name="pipeline (kfp)")
    client = MlflowClient()
    for name, value in (tags or {}).items():
        client.set_tag(run_id, name, value)
    os.environ[PARENT_RUN_ENV] = run_id
    return run_id
