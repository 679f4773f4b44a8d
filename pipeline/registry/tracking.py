"""MLflow tracking for the pipeline steps: parent and stage runs, provenance tags, training callbacks.

The runs' layout and lifecycle are defined here; other modules call MLflow too (the steps log
metrics and artifacts into the run this module opened; the registry, model packaging and
``models:/`` loading live in :mod:`pipeline.steps.register`, :mod:`pipeline.registry.aliases`,
:mod:`pipeline.registry.packaging`, :mod:`pipeline.registry.pyfunc_model`; KFP's parent adoption in
:mod:`pipeline.kfp.parent_run` calls :func:`find_or_create_parent` here).

Layout in the UI: one *parent* run per pipeline execution and one *child* run per stage (and
per alpha), so alphas compare side by side. Each ``dvc repro`` stage is its own process, so the
parent is found again by a key: ``ESRGAN_PIPELINE_RUN_ID`` when the launcher (``esrgan main``,
KFP) sets it, else a hash of the git commit, ``params.yaml`` and ``data.dvc``.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<project>/mlflow.db`` with
artifacts in ``<project>/mlruns``. Credentials are never logged: params come only from the
validated configuration.

Failures: an HTTP tracking server is probed once with a short timeout before any MLflow call
(MLflow's client retries for minutes); a stage's run ends ``FAILED`` on an error and ``KILLED``
on SIGTERM, Ctrl-C or preemption; a run left ``RUNNING`` by a process that could not clean up
(SIGKILL) is closed as ``KILLED`` by the next attempt of the stage, and a new parent run closes
the parents of superseded executions, so orphans do not accumulate.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from esrgan.training.callbacks import Callbacks
from pipeline.errors import TrackingUnavailable, redact

if TYPE_CHECKING:
    from mlflow.utils.rest_utils import MlflowHostCreds

log = logging.getLogger(__name__)

PARENT_RUN_ENV = "ESRGAN_PIPELINE_RUN_ID"
TAG_KEY = "esrgan.pipeline_key"
TAG_STAGE = "esrgan.stage"
TAG_LAUNCHER = "esrgan.launcher"
#: Seconds the up-front probe of an HTTP tracking server may take.
CONNECT_TIMEOUT_S = 5.0
#: MLflow's HTTP client retries a dead server for minutes (7 tries, exponential backoff); a command
#: a person waits for sets these (unless already set) so a failure after the probe is seconds too.
FAIL_FAST_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
#: The probe's request: a read every MLflow server answers (200, or 401/403 behind auth).
PROBE_ENDPOINT = "/api/2.0/mlflow/registered-models/search?max_results=1"
#: MLflow 3's UI opens an experiment in its GenAI view unless this tag says it trains a model.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


@dataclass(frozen=True)
class Tracking:
    """Where this pipeline's runs go: the project root, its params file and the experiment."""

    root: Path
    experiment_id: str
    params_file: Path | None = None


def _split_credentials(uri: str) -> tuple[str, tuple[str, str] | None]:
    """``scheme://user:pw@host/path`` -> ``("scheme://host/path", ("user", "pw"))`` (percent-decoded)."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(uri)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return uri, None
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=hostport)), (unquote(user), unquote(password))


def adopt_uri_credentials(uri: str) -> str:
    """``uri`` without its userinfo, which moves to ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``.

    MLflow sends a URI's userinfo as HTTP basic auth, but it also prints the URI (run links on
    stdout, error messages): without the userinfo nothing it writes can hold the password.
    Credentials already in the environment win, as they do in MLflow's own client.
    """
    base, creds = _split_credentials(uri)
    if creds is None or not uri.startswith(("http://", "https://")):
        return uri
    if not (os.environ.get("MLFLOW_TRACKING_USERNAME") and os.environ.get("MLFLOW_TRACKING_PASSWORD")):
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = creds
    return base


def _reason(exc: BaseException, timeout: float) -> str:
    """A few words on why a request failed (``Connection refused``, ``Name or service not known``)."""
    import requests

    if isinstance(exc, requests.exceptions.Timeout) and not isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no answer within {timeout:g} s"
    text = str(exc)
    if found := re.search(r"\[(?:Errno -?\d+|SSL: \w+)\] ([^'\")(\]]+)", text):
        return found.group(1).strip()
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no connection within {timeout:g} s"
    return type(exc).__name__


def check_reachable(uri: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within about ``timeout`` seconds when an HTTP(S) tracking server does not answer.

    The probe authenticates as MLflow's client would (the URI's userinfo, or
    ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` or ``MLFLOW_TRACKING_TOKEN``, and its TLS settings).
    Any answer from an MLflow API counts (an auth proxy's 401 too: the real call reports it);
    refused are "nobody there", a TLS failure, and a server that answers 404 or a page that is
    not JSON for the MLflow API (not an MLflow server, or a URI without its path prefix), each
    with one line naming the URI, credentials masked. Non-HTTP stores (sqlite, file) need no probe.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import requests
    from mlflow.utils.credentials import get_default_host_creds

    base, url_creds = _split_credentials(uri)
    base = base.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    shown = redact(uri)
    creds: MlflowHostCreds = get_default_host_creds(base)  # unannotated in MLflow
    headers: dict[str, str] = {}
    auth: tuple[str, str] | None = None
    if creds.username and creds.password:
        auth = (creds.username, creds.password)
    elif creds.token:
        headers["Authorization"] = f"Bearer {creds.token}"
    elif url_creds is not None:
        auth = url_creds
    verify: bool | str = False if creds.ignore_tls_verification else (creds.server_cert_path or True)
    start = time.monotonic()
    try:
        answer = requests.get(
            base + PROBE_ENDPOINT,
            auth=auth,
            headers=headers,
            timeout=(timeout, timeout),
            verify=verify,
            cert=creds.client_cert_path,
            allow_redirects=True,
        )
    except requests.exceptions.SSLError as exc:
        raise TrackingUnavailable(
            f"MLflow tracking server {shown}: TLS failed ({_reason(exc, timeout)}); set "
            "MLFLOW_TRACKING_SERVER_CERT_PATH to its CA bundle (or MLFLOW_TRACKING_INSECURE_TLS=true)"
        ) from None
    except (requests.exceptions.RequestException, OSError, ValueError) as exc:
        raise TrackingUnavailable(
            f"MLflow tracking server {shown} is unreachable ({_reason(exc, timeout)}; gave up after "
            f"{time.monotonic() - start:.1f} s): start it, or unset MLFLOW_TRACKING_URI to use ./mlflow.db"
        ) from None
    api = PROBE_ENDPOINT.split("?")[0]
    if answer.status_code == 404 and "error_code" not in answer.text[:2000]:
        raise TrackingUnavailable(
            f"MLflow tracking URI {shown} answered 404 Not Found for the MLflow API "
            f"({api}): not an MLflow tracking server, or the URI lacks its path prefix"
        )
    if answer.ok and not _is_json(answer.text):
        raise TrackingUnavailable(
            f"MLflow tracking URI {shown} answered the MLflow API ({api}) with a page that is not JSON "
            f"({answer.headers.get('Content-Type', 'no content type')}): not an MLflow tracking server "
            "(or a login page in front of it)"
        )


def _is_json(text: str) -> bool:
    import json

    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def default_tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the project's embedded store ``<root>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def configure(root: Path, experiment: str, params_file: Path | None = None) -> Tracking:
    """Point MLflow at the configured server (or the embedded default) and experiment.

    Raises:
        TrackingUnavailable: ``MLFLOW_TRACKING_URI`` names an HTTP server that does not answer.
    """
    uri = default_tracking_uri(root)
    check_reachable(uri)
    uri = adopt_uri_credentials(uri)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        location = None
        if uri.startswith("sqlite:"):
            # MLFLOW_DEFAULT_ARTIFACT_ROOT is a server setting; a client with a local store must pass it.
            location = os.environ.get("MLFLOW_DEFAULT_ARTIFACT_ROOT") or (root / "mlruns").resolve().as_uri()
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # created concurrently
            mlflow.create_experiment(experiment, artifact_location=location, tags=EXPERIMENT_TAGS)
    exp = mlflow.set_experiment(experiment)
    return Tracking(root=root, experiment_id=exp.experiment_id, params_file=params_file)


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _data_hash(root: Path) -> str | None:
    import yaml

    try:
        meta = yaml.safe_load((root / "data.dvc").read_text())
        return str(meta["outs"][0]["md5"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return None


def provenance_tags(root: Path, params_file: Path | None = None) -> dict[str, str]:
    """Tags linking a run to the code, data and parameters that produced it."""
    tags = {
        # Container images have no .git: the image build records the commit in ESRGAN_GIT_COMMIT.
        "git.commit": _git(root, "rev-parse", "HEAD") or os.environ.get("ESRGAN_GIT_COMMIT") or "unknown",
        "git.dirty": str(bool(_git(root, "status", "--porcelain", "--untracked-files=no"))).lower(),
        "data.dvc.md5": _data_hash(root) or "unknown",
    }
    if variant := os.environ.get("ESRGAN_IMAGE_VARIANT"):  # set by the image (cpu/cuda): ran in a container
        tags["image.variant"] = variant
    if params_file is not None and params_file.is_file():
        tags["params.sha256"] = hashlib.sha256(params_file.read_bytes()).hexdigest()[:16]
    return tags


def provenance_key(tags: Mapping[str, str]) -> str:
    """The key of a DVC execution, computed from its :func:`provenance_tags`: stages of one
    execution share code, data and params, hence this hash. (KFP computes its own key from the
    resolved params and data source: :func:`pipeline.kfp.params.pipeline_key`.)"""
    text = "|".join(f"{k}={tags.get(k, '')}" for k in ("git.commit", "data.dvc.md5", "params.sha256"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def find_or_create_parent(tracking: Tracking, key: str, tags: Mapping[str, str], run_name: str) -> tuple[str, bool]:
    """The ``RUNNING`` parent run tagged with pipeline key ``key``, else a new one with ``tags``.

    The one rule both launchers use to find an execution's parent again (DVC: :func:`parent_run_id`;
    KFP: :func:`pipeline.kfp.parent_run.adopt_parent_run`). Returns ``(run_id, created)``.
    """
    found = mlflow.search_runs(
        [tracking.experiment_id],
        filter_string=f"tags.`{TAG_KEY}` = '{key}' and attributes.status = 'RUNNING'",
        max_results=1,
        output_format="list",
    )
    if found:
        return found[0].info.run_id, False
    run = MlflowClient().create_run(tracking.experiment_id, run_name=run_name, tags={**tags, TAG_KEY: key})
    return run.info.run_id, True


def parent_run_id(tracking: Tracking, run_name: str = "pipeline") -> str:
    """The parent run of this pipeline execution: from the environment, found by key, or created.

    A new parent closes (``KILLED``) the ``RUNNING`` parents of earlier DVC executions with
    another key: a failed or abandoned execution leaves them, and nothing else would end them.
    """
    if run_id := os.environ.get(PARENT_RUN_ENV):
        return run_id
    tags = provenance_tags(tracking.root, tracking.params_file)
    run_id, created = find_or_create_parent(tracking, provenance_key(tags), tags, run_name)
    if created:
        close_orphaned_parents(tracking, keep=run_id)
    return run_id


def close_orphaned_parents(tracking: Tracking, keep: str) -> list[str]:
    """Mark ``RUNNING`` DVC parent runs other than ``keep`` (and their running children) ``KILLED``.

    Kubeflow parents (tag ``esrgan.launcher``) are left alone: several executions may run at once.
    Returns the ids closed.
    """
    client = MlflowClient()
    closed = []
    running = mlflow.search_runs(
        [tracking.experiment_id], filter_string="attributes.status = 'RUNNING'", output_format="list"
    )
    for run in running:
        tags = run.data.tags
        if run.info.run_id == keep or TAG_KEY not in tags or TAG_LAUNCHER in tags:
            continue
        _kill(client, run.info.run_id, f"superseded by pipeline run {keep}")
        for child in running:
            if child.data.tags.get("mlflow.parentRunId") == run.info.run_id:
                _kill(client, child.info.run_id, f"its pipeline run {run.info.run_id} was superseded")
        closed.append(run.info.run_id)
    return closed


def _kill(client: MlflowClient, run_id: str, reason: str) -> None:
    client.set_tag(run_id, "esrgan.closed_because", reason)
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))


class StageTerminated(KeyboardInterrupt):
    """SIGTERM arrived during a stage: unwinds like Ctrl-C so the run is closed as ``KILLED``."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into :class:`StageTerminated` meanwhile (main thread, default handler only;
    the training loop installs its own, which checkpoints first and raises ``TrainingPreempted``)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise StageTerminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _is_kill(exc: BaseException) -> bool:
    from esrgan.training import TrainingPreempted

    return isinstance(exc, (KeyboardInterrupt, SystemExit, TrainingPreempted))


@contextlib.contextmanager
def stage_run(
    tracking: Tracking, stage: str, params: Mapping[str, Any], run_name: str | None = None
) -> Iterator[mlflow.ActiveRun]:
    """A child run for one stage under this execution's parent run, with params and provenance.

    The run ends ``FINISHED``, ``FAILED`` (an exception) or ``KILLED`` (SIGTERM, Ctrl-C,
    preemption). A ``RUNNING`` run of the same name under the same parent is a dead earlier
    attempt of this very stage (DVC runs one stage at a time; KFP retries after the pod died):
    it is closed as ``KILLED`` first.
    """
    parent = parent_run_id(tracking)
    name = run_name or stage
    client = MlflowClient()
    for stale in mlflow.search_runs(
        [tracking.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}' and attributes.status = 'RUNNING'",
        output_format="list",
    ):
        if stale.info.run_name == name:
            _kill(client, stale.info.run_id, "a later attempt of the same stage started")
    tags = {**provenance_tags(tracking.root, tracking.params_file), TAG_STAGE: stage, "mlflow.parentRunId": parent}
    run = mlflow.start_run(experiment_id=tracking.experiment_id, run_name=name, tags=tags)
    status = RunStatus.FINISHED
    try:
        with _sigterm_unwinds():
            mlflow.log_params(flatten(params))
            yield run
    except BaseException as exc:
        status = RunStatus.KILLED if _is_kill(exc) else RunStatus.FAILED
        raise
    finally:
        mlflow.end_run(RunStatus.to_string(status))


def finish_parent(tracking: Tracking) -> str:
    """Mark the parent run finished (called by the last stage); returns its id."""
    run_id = parent_run_id(tracking)
    MlflowClient().set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    return run_id


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"a.b.c": value}`` (MLflow params are flat; lists become strings)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return out


class MlflowCallbacks(Callbacks):
    """Forward training events to the active MLflow run: metrics over steps, samples, backbone."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def on_train_start(self, stage: str, config: Mapping[str, Any], info: Mapping[str, Any]) -> None:
        info_flat = flatten(info)
        mlflow.set_tags({f"train.{k}": str(v)[:500] for k, v in info_flat.items()})

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        mlflow.log_metrics({f"{self.prefix}{k}": float(v) for k, v in metrics.items()}, step=step)

    def on_validation(self, step: int, metrics: Mapping[str, float], image_paths: Sequence[Path]) -> None:
        mlflow.log_metrics({f"{self.prefix}val_{k}": float(v) for k, v in metrics.items()}, step=step)
        for path in image_paths:
            mlflow.log_artifact(str(path), artifact_path=f"samples/step_{step:07d}")
