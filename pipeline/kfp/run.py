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
import re
import socket
import ssl
import time
import urllib.parse
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import PipelineError, redact
from pipeline.kfp.params import KNOBS, apply_overrides, canonical_json, parse_override, split_knobs, training_gpus
from pipeline.params import ParamsError, load_params_document

PATH_TO_KNOB = {path: knob for knob, path in KNOBS.items()}

#: What ``kfp.Client`` asks first (``get_kfp_healthz``, 5 tries 5 s apart, each with urllib3's retries).
HEALTHZ_PATH = "/apis/v2beta1/healthz"
PROBE_TIMEOUT_S = 5.0
HEALTHZ_MAX_BYTES = 64 * 1024
#: ``kfp.Client`` fetches a GCP token itself for these hosts (``Client._is_inverse_proxy_host``).
_INVERSE_PROXY_HOST = re.compile(r"\S+.googleusercontent.com/{0,1}$")


class KfpHostUnavailable(PipelineError, ConnectionError):
    """The KFP API at ``--host`` does not answer, is not a KFP API, or refused the run; the message names the host."""


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
        merged = apply_overrides(doc, dotted)
        rest, knobs = split_knobs(merged)
        args = {"params_json": canonical_json(rest), **knobs, **args}
        # The training pods' GPUs follow runtime.processes whenever it is sent.
        sends_processes = params_doc is not None or any(key == "runtime.processes" for key, _ in dotted)
        if "training_gpus" in names and "training_gpus" not in args and sends_processes:
            args["training_gpus"] = training_gpus(merged)
    return args


def load_params_doc(params_file: Path) -> dict[str, Any]:
    return load_params_document(params_file)


@contextlib.contextmanager
def print_restored() -> Iterator[None]:
    """Put back ``builtins.print`` after a ``kfp.local`` run.

    kfp.local indents each task's log by swapping ``builtins.print`` in and out around the task
    (``kfp.local.logging_utils.indented_print``). After this pipeline (a ParallelFor) its indenting
    print is sometimes still installed when the run returns, so every later ``print`` in the
    process starts with four spaces: a manifest that ``esrgan deploy kserve`` prints in the same
    process no longer parses.
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

    from pipeline.images import Images
    from pipeline.kfp.dag import build_pipeline

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
    record: dict[str, Any] = json.loads(task.output)  # the register step's registered.json
    (workdir / "registered.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def shown_url(url: str) -> str:
    """``url`` fit for a message: userinfo masked (``http://***@host``), no query or fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    _, at, hostport = parts.netloc.rpartition("@")
    netloc = f"***@{hostport}" if at else hostport
    return redact(urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def _one_line(text: str, limit: int) -> str:
    """``text`` (from a server: untrusted) as one line of at most about ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def kfp_host(host: str) -> str:
    """``host`` as ``kfp.Client`` uses it: ``https://`` when it names no protocol, no trailing ``/``."""
    host = host.strip()
    if host and not host.startswith("http"):
        host = "https://" + host
    return host.rstrip("/")


def _network_reason(exc: BaseException, timeout: float) -> str:
    """A few words for why a connection failed (refused, unresolvable, timed out, TLS...)."""
    import urllib3

    chain: list[BaseException] = []  # exc, then what caused it (urllib3 keeps the cause in .reason)
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    e = urllib3.exceptions

    def first(*kinds: type[BaseException]) -> BaseException | None:
        return next((err for err in chain if isinstance(err, kinds)), None)

    if first(socket.gaierror, e.NameResolutionError):
        return "its host name does not resolve"
    if first(ConnectionRefusedError):
        return "connection refused"
    tls = first(ssl.SSLError) or first(e.SSLError)
    if tls is not None:
        return f"TLS failed: {getattr(tls, 'reason', None) or type(tls).__name__}"
    if first(e.ReadTimeoutError):
        return f"no answer within {timeout:g} s"
    # NewConnectionError is a ConnectTimeoutError too: the OSError under it says more.
    if first(TimeoutError):
        return f"no connection within {timeout:g} s"
    oserror = first(OSError)
    if oserror is not None and getattr(oserror, "strerror", None):
        return str(getattr(oserror, "strerror", "")).lower()
    if first(e.ConnectTimeoutError):
        return f"no connection within {timeout:g} s"
    if first(e.ProtocolError):
        return "the connection closed without an HTTP answer"
    return type(chain[-1]).__name__  # not its text: urllib3 puts the URL there, credentials included


def probe_host(host: str, token: str | None = None, timeout: float | None = None) -> None:
    """Fail within about ``2 * timeout`` seconds (:data:`PROBE_TIMEOUT_S`) unless ``host`` answers as a KFP API.

    One ``GET <host>/apis/v2beta1/healthz`` (what ``kfp.Client`` asks first), no retries, no
    redirects, the bearer ``token`` as ``kfp.Client`` sends it. Refused, unresolvable, silent,
    a 404 or other non-KFP answer, a redirect (a login page) or a refused token: one line
    naming the host without credentials.

    Raises:
        KfpHostUnavailable: the problem, in one line.
    """
    import certifi
    import urllib3

    timeout = PROBE_TIMEOUT_S if timeout is None else timeout
    shown = shown_url(host)
    if not host:
        raise KfpHostUnavailable("--host is empty: give the KFP API endpoint, e.g. http://localhost:8080")
    url = host + HEALTHZ_PATH
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    start = time.monotonic()
    try:
        http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
        response = http.request(
            "GET",
            url,
            headers=headers,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
            redirect=False,
            preload_content=False,
        )
        body = response.read(HEALTHZ_MAX_BYTES)  # the health JSON is tiny; never load a huge answer
        response.release_conn()
    except urllib3.exceptions.LocationValueError:  # its text holds the URL, credentials included
        raise KfpHostUnavailable(f"--host {shown}: not a valid URL (http[s]://host[:port][/path])") from None
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        raise KfpHostUnavailable(
            f"KFP host {shown} is unreachable ({_network_reason(exc, timeout)}; gave up after "
            f"{time.monotonic() - start:.1f} s): check --host, e.g. http://localhost:8080 for a port-forwarded ml-pipeline-ui"
        ) from None
    status = response.status
    answer = f"GET {HEALTHZ_PATH} answered HTTP {status} {_one_line(response.reason or '', 80)}".rstrip()
    if 200 <= status < 300:
        try:
            health = json.loads(body)
        except ValueError:
            health = None
        if isinstance(health, dict):
            return
        raise KfpHostUnavailable(
            f"KFP host {shown} is not a Kubeflow Pipelines API: {answer} but not with KFP's health JSON"
        )
    if 300 <= status < 400:
        location = _one_line(shown_url(response.headers.get("Location", "") or ""), 200) or "?"
        raise KfpHostUnavailable(
            f"KFP host {shown} redirects GET {HEALTHZ_PATH} to {location} (a login page?): "
            "give the API endpoint itself, with a bearer token in KFP_TOKEN if it needs one"
        )
    if status in (401, 403):
        if not token and _INVERSE_PROXY_HOST.match(host):
            return  # kfp.Client fetches a GCP token for these hosts itself
        fix = "the token in KFP_TOKEN was refused" if token else "it needs a bearer token in KFP_TOKEN"
        raise KfpHostUnavailable(f"KFP host {shown} refused access ({answer}): {fix}")
    if status == 404:
        raise KfpHostUnavailable(
            f"KFP host {shown} is not a Kubeflow Pipelines API ({answer}): give the KFP API endpoint, "
            "e.g. http://localhost:8080 for a port-forwarded ml-pipeline-ui, or https://<kubeflow>/pipeline"
        )
    raise KfpHostUnavailable(f"KFP host {shown} does not work ({answer}): is Kubeflow Pipelines running there?")


def _api_error_line(exc: BaseException) -> str:
    """One line for a ``kfp_server_api.ApiException``: status, reason and the API's own message."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or ""
    body = getattr(exc, "body", None) or ""
    message = ""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict):
            message = str(doc.get("message") or doc.get("error") or "")
    except (TypeError, ValueError):
        message = "" if str(body).lstrip().startswith("<") else str(body)  # an HTML error page says nothing
    message = _one_line(message, 300)
    # status 0: kfp_server_api's own network error; its reason is "<exception type>\n<text with the URL>".
    first = str(reason).splitlines()[0] if str(reason).strip() else type(exc).__name__
    head = f"HTTP {status} {_one_line(str(reason), 80)}".strip() if status else _one_line(first, 80)
    return f"{head}: {message}" if message else head


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
    The package and arguments are checked first, then :func:`probe_host` (seconds) before
    ``kfp.Client`` and its retries.

    Raises:
        KfpHostUnavailable: the host does not answer as a KFP API, or the API refused the run (one line).
    """
    defaults = compiled_defaults(package)
    doc = load_params_doc(params_file) if params_file is not None else None
    args = build_arguments(defaults, overrides, params_doc=doc, compiled_params_json=defaults.get("params_json"))
    host = kfp_host(host)
    token = os.environ.get("KFP_TOKEN") or None
    probe_host(host, token)

    import kfp
    import kfp_server_api
    import urllib3

    shown = shown_url(host)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="This client only works with Kubeflow Pipeline", category=FutureWarning
            )
            client = kfp.Client(host=host, namespace=namespace, existing_token=token)
        result = client.create_run_from_pipeline_package(
            str(package),
            arguments=args,
            run_name=run_name,
            experiment_name=experiment,
            namespace=namespace,
            enable_caching=enable_caching,
        )
    except kfp_server_api.ApiException as exc:
        line = redact(_api_error_line(exc))
        line = line.replace(token, "***") if token and len(token) >= 4 else line
        raise KfpHostUnavailable(f"KFP host {shown} did not create the run: {line}") from None
    except TimeoutError:  # kfp.Client.get_kfp_healthz: "Failed getting healthz endpoint after 5 attempts"
        raise KfpHostUnavailable(f"KFP host {shown} stopped answering its health check") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KfpHostUnavailable(
            f"KFP host {shown} stopped answering ({_network_reason(exc, PROBE_TIMEOUT_S)})"
        ) from None
    return str(result.run_id)
