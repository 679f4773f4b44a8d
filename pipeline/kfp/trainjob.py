"""Training across several pods: a Kubeflow Trainer ``TrainJob`` or a Training Operator ``PyTorchJob``.

Both run the project image's ``esrgan`` entry point under ``torchrun`` on ``nodes`` pods of
``procs_per_node`` ranks each, with the checkpoint volume mounted at the same path as in the
KFP training task (so run folders, inputs and outputs live on one shared ``ReadWriteMany``
volume), and the MLflow and S3 credentials from the same secrets as the KFP tasks.

* ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``, Kubeflow Trainer v2): ``runtimeRef`` names the
  ``torch-distributed`` ClusterTrainingRuntime, whose torch plugin sets ``PET_NNODES``,
  ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR``/``PORT``, which ``torchrun`` reads;
  the volume is added with a ``runtimePatches`` entry (the runtime's job and container are ``node``).
* ``PyTorchJob`` (``kubeflow.org/v1``, Training Operator v1): one ``Master`` and ``nodes - 1``
  ``Worker`` replicas (container ``pytorch``); ``torchrun`` gets the rendezvous from the operator's
  ``MASTER_ADDR``, ``MASTER_PORT`` and ``RANK`` (the node rank), expanded by Kubernetes.

:func:`run_trainjob` is what a KFP training task does with ``runtime.nodes`` > 1: stage its inputs
on the volume, create the job (or adopt the one a previous attempt created), wait for it, print
its rank-0 logs and return its metrics. ``esrgan deploy trainjob`` prints a manifest to apply by
hand. None of this has run against a cluster here (docs/distributed-training.md says what has).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from esrgan.fileio import atomic_write
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api, CustomObjectsApi

    from pipeline.kfp.train_task import TrainTask
    from pipeline.params import PipelineParams

TRAINJOB = {"group": "trainer.kubeflow.org", "version": "v1alpha1", "plural": "trainjobs", "kind": "TrainJob"}
PYTORCHJOB = {"group": "kubeflow.org", "version": "v1", "plural": "pytorchjobs", "kind": "PyTorchJob"}
Kind = Literal["trainjob", "pytorchjob"]
KINDS: dict[str, dict[str, str]] = {"trainjob": TRAINJOB, "pytorchjob": PYTORCHJOB}
#: The Kubeflow Trainer runtime for PyTorch (installed with the Trainer's default runtimes).
DEFAULT_RUNTIME = "torch-distributed"
#: Environment variable of the KFP training task that picks the job kind (default ``trainjob``).
KIND_ENV = "ESRGAN_TRAINJOB_KIND"
#: Where the KFP tasks mount the checkpoint volume (``pipeline.kfp.dag.CHECKPOINT_MOUNT``).
DEFAULT_MOUNT = "/mnt/checkpoints"
#: (secret, key, env var): the KFP tasks' MLflow and S3 settings (``pipeline.kfp.dag``), never literals.
SECRET_ENV: tuple[tuple[str, str, str], ...] = (
    ("esrgan-mlflow", "tracking-uri", "MLFLOW_TRACKING_URI"),
    ("esrgan-mlflow", "username", "MLFLOW_TRACKING_USERNAME"),
    ("esrgan-mlflow", "password", "MLFLOW_TRACKING_PASSWORD"),
    ("esrgan-s3", "access-key-id", "AWS_ACCESS_KEY_ID"),
    ("esrgan-s3", "secret-access-key", "AWS_SECRET_ACCESS_KEY"),
    ("esrgan-s3", "endpoint-url", "AWS_ENDPOINT_URL"),
    ("esrgan-s3", "endpoint-url", "MLFLOW_S3_ENDPOINT_URL"),
)


class TrainJobError(PipelineError, RuntimeError):
    """The multi-node job could not be created, or it failed; the message says which and why."""


@dataclass(frozen=True)
class JobSpec:
    """What a multi-node training job runs and where.

    ``command`` is what follows ``torchrun <rendezvous> -m`` (``["pipeline.cli", "train", ...]``).
    """

    name: str
    image: str
    command: Sequence[str]
    nodes: int
    procs_per_node: int
    gpus_per_node: int
    namespace: str | None = None
    pvc: str | None = "esrgan-checkpoints"
    mount: str = DEFAULT_MOUNT
    cpu: str = "4"
    memory: str = "16Gi"
    runtime: str = DEFAULT_RUNTIME
    labels: Mapping[str, str] = field(default_factory=dict)


def _check(spec: JobSpec) -> None:
    problems = []
    if not 1 <= len(spec.name) <= 63 or not spec.name.replace("-", "").isalnum() or spec.name != spec.name.lower():
        problems.append(f"job name {spec.name!r}: lowercase letters, digits and '-', at most 63 characters")
    if spec.nodes < 1 or spec.procs_per_node < 1 or spec.gpus_per_node < 0:
        problems.append("nodes and processes per node must be at least 1, GPUs per node at least 0")
    if problems:
        raise TrainJobError(problems)


def _env() -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    for secret, key, var in SECRET_ENV:
        env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return env


def _resources(spec: JobSpec) -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": spec.cpu, "memory": spec.memory}
    limits: dict[str, Any] = {}
    if spec.gpus_per_node:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(spec.gpus_per_node)
    return {"requests": requests, "limits": limits} if limits else {"requests": requests}


def _metadata(spec: JobSpec) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": spec.name,
        "labels": {"app.kubernetes.io/part-of": "esrgan-pipeline", **spec.labels},
    }
    if spec.namespace:
        meta["namespace"] = spec.namespace
    return meta


def trainjob_manifest(spec: JobSpec) -> dict[str, Any]:
    """A ``TrainJob`` on the ``torch-distributed`` runtime (torchrun reads the runtime's ``PET_*`` variables)."""
    _check(spec)
    trainer: dict[str, Any] = {
        "image": spec.image,
        "command": ["torchrun"],
        "args": ["-m", *spec.command],
        "numNodes": spec.nodes,
        "numProcPerNode": spec.procs_per_node,
        "resourcesPerNode": _resources(spec),
        "env": _env(),
    }
    job: dict[str, Any] = {
        "apiVersion": f"{TRAINJOB['group']}/{TRAINJOB['version']}",
        "kind": TRAINJOB["kind"],
        "metadata": _metadata(spec),
        "spec": {"runtimeRef": {"name": spec.runtime}, "trainer": trainer},
    }
    if spec.pvc:
        pod = {
            "volumes": [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": spec.pvc}}],
            "containers": [{"name": "node", "volumeMounts": [{"name": "checkpoints", "mountPath": spec.mount}]}],
        }
        job["spec"]["runtimePatches"] = [
            {
                "manager": "esrgan-pipeline",
                "trainingRuntimeSpec": {
                    "template": {
                        "spec": {
                            "replicatedJobs": [{"name": "node", "template": {"spec": {"template": {"spec": pod}}}}]
                        }
                    }
                },
            }
        ]
    return job


def pytorchjob_manifest(spec: JobSpec) -> dict[str, Any]:
    """A ``PyTorchJob``: a Master and ``nodes - 1`` Workers, torchrun on the operator's rendezvous variables."""
    _check(spec)
    rendezvous = [
        f"--nnodes={spec.nodes}",
        f"--nproc-per-node={spec.procs_per_node}",
        "--node-rank=$(RANK)",  # the operator's RANK is the pod's node rank; Kubernetes expands $(VAR)
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
    ]
    container: dict[str, Any] = {
        "name": "pytorch",
        "image": spec.image,
        "command": ["torchrun"],
        "args": [*rendezvous, "-m", *spec.command],
        "env": _env(),
        "resources": _resources(spec),
    }
    pod: dict[str, Any] = {"containers": [container]}
    if spec.pvc:
        container["volumeMounts"] = [{"name": "checkpoints", "mountPath": spec.mount}]
        pod["volumes"] = [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": spec.pvc}}]

    def replica(count: int) -> dict[str, Any]:  # each its own copy: no YAML anchors in the output
        return {"replicas": count, "restartPolicy": "OnFailure", "template": {"spec": copy.deepcopy(pod)}}

    replicas = {"Master": replica(1)}
    if spec.nodes > 1:
        replicas["Worker"] = replica(spec.nodes - 1)
    return {
        "apiVersion": f"{PYTORCHJOB['group']}/{PYTORCHJOB['version']}",
        "kind": PYTORCHJOB["kind"],
        "metadata": _metadata(spec),
        # cleanPodPolicy None: the pods (and their logs) stay after the job ends.
        "spec": {
            "nprocPerNode": str(spec.procs_per_node),
            "pytorchReplicaSpecs": replicas,
            "runPolicy": {"cleanPodPolicy": "None"},
        },
    }


def manifest(kind: Kind, spec: JobSpec) -> dict[str, Any]:
    return trainjob_manifest(spec) if kind == "trainjob" else pytorchjob_manifest(spec)


def to_yaml(doc: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(doc), sort_keys=False)


def job_state(kind: Kind, obj: Mapping[str, Any]) -> tuple[str, str]:
    """``("running" | "succeeded" | "failed", reason)`` from a job's ``status.conditions``."""
    done, failed = ("Complete", "Failed") if kind == "trainjob" else ("Succeeded", "Failed")
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        message = condition.get("message") or condition.get("reason") or ""
        if condition.get("type") == failed:
            return "failed", message
        if condition.get("type") == done:
            return "succeeded", message
    return "running", ""


def rank0_selector(kind: Kind, name: str) -> str:
    """Label selector of the pod that runs node rank 0 (whose rank 0 logs)."""
    if kind == "trainjob":  # a TrainJob runs as a JobSet; node 0 is completion index 0 of job "node"
        return f"jobset.sigs.k8s.io/jobset-name={name},batch.kubernetes.io/job-completion-index=0"
    return f"training.kubeflow.org/job-name={name},training.kubeflow.org/replica-type=master"


# --- the KFP training task with runtime.nodes > 1 ---------------------------------------------------


def _copy_in(src: Path, dest: Path) -> Path:
    """``src`` (file or folder) at ``dest`` on the shared volume, unless an identical copy is there."""
    if dest.exists():
        return dest  # a previous attempt staged it; inputs of one pipeline key never change
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        tmp.rename(dest)
    else:
        atomic_write(dest, lambda t: shutil.copyfile(src, t))
    return dest


def _namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.is_file() else "default"


def task_job(
    task: TrainTask,
    params: PipelineParams,
    gpus: int,
    pvc: str,
    kind: Kind = "trainjob",
    mount: str = DEFAULT_MOUNT,
    namespace: str | None = None,
    image: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """The job a KFP training task with ``runtime.nodes`` > 1 creates, and the folder its outputs land in.

    Copies the task's inputs onto the volume (the job's pods see only the volume): the patches
    into ``<key>/patches`` (shared by both stages), the config artifact and the initial generator
    into ``<key>/<stage>-inputs``. Every pod runs ``torchrun -m pipeline.cli kfp train-task`` on
    them, the entry point of the task's own ranks, writing into ``<key>/<stage>-outputs``.

    Raises:
        TrainJobError: ``run_dir`` is not on the volume mounted at ``mount``.
        ParamsError: the global batch does not split over nodes x processes.
    """
    from pipeline.errors import ParamsError
    from pipeline.images import Images
    from pipeline.params import batch_split_problems, params_document
    from pipeline.torchrun import resolve_processes

    stage, run_dir = task.stage, task.run_dir
    if Path(mount) not in run_dir.parents:
        raise TrainJobError(f"checkpoint_root must lie on the volume mounted at {mount} (run folder {run_dir})")
    procs = resolve_processes(params.runtime.processes, params.runtime.device, gpus)
    problems = batch_split_problems(params_document(params), procs)
    if problems:
        raise ParamsError(problems)
    key_dir = run_dir.parent
    shared = key_dir / f"{stage}-inputs"
    out = key_dir / f"{stage}-outputs"
    staged = dataclasses.replace(
        task,
        config_path=_copy_in(task.config_path, shared / "config.json"),
        patches=_copy_in(task.patches, key_dir / "patches"),
        init=_copy_in(task.init, shared / "init.pth") if task.init is not None else None,
        model_out=out / "generator.pth",
        metrics_file=out / "metrics.json",
    )
    spec = JobSpec(
        name=f"esrgan-{stage.replace('_', '-')}-{key_dir.name}".lower()[:63],
        image=image or Images.for_version().cuda,
        command=["pipeline.cli", "kfp", "train-task", *staged.arguments()],
        nodes=int(params.runtime.nodes),
        procs_per_node=procs,
        gpus_per_node=gpus,
        namespace=namespace,
        pvc=pvc,
        mount=mount,
    )
    return manifest(kind, spec), out


def run_trainjob(
    task: TrainTask,
    params: PipelineParams,
    gpus: int,
    pvc: str,
    poll_s: float = 15.0,
) -> dict[str, Any]:
    """Run a training task as a multi-node job (:func:`task_job`) and return its metrics.

    The job's name derives from the pipeline key and the stage, so a retried KFP task adopts the
    job a previous attempt created (running or succeeded), and replaces a failed one (the new job
    resumes from the checkpoints on the volume). Node 0's last log lines are printed into the task's log.

    Raises:
        TrainJobError: the job could not be created, or it failed.
    """
    from kubernetes import client, config

    kind: Kind = "pytorchjob" if _kind_env() == "pytorchjob" else "trainjob"
    body, out = task_job(task, params, gpus, pvc, kind, namespace=_namespace())
    name, ns = body["metadata"]["name"], body["metadata"]["namespace"]
    nodes = int(params.runtime.nodes)
    procs = body["spec"]["trainer"]["numProcPerNode"] if kind == "trainjob" else int(body["spec"]["nprocPerNode"])
    api = KINDS[kind]
    config.load_incluster_config()
    custom = client.CustomObjectsApi()
    coordinates = (api["group"], api["version"], ns, api["plural"])
    try:
        current = custom.get_namespaced_custom_object(*coordinates, name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise TrainJobError(f"{api['kind']} {ns}/{name}: {exc.status} {exc.reason}") from None
        current = None
    if current is not None and job_state(kind, current)[0] == "failed":  # a new job resumes where it stopped
        custom.delete_namespaced_custom_object(*coordinates, name, propagation_policy="Foreground")
        deadline = time.monotonic() + 600
        while _exists(custom, coordinates, name):
            if time.monotonic() > deadline:
                raise TrainJobError(f"{api['kind']} {ns}/{name}: still being deleted after 10 minutes")
            time.sleep(2)
        current = None
    if current is None:
        try:
            custom.create_namespaced_custom_object(*coordinates, body)
        except client.ApiException as exc:
            raise TrainJobError(f"creating {api['kind']} {ns}/{name}: {exc.status} {exc.reason}") from None
    print(f"{api['kind']} {ns}/{name}: {nodes} node(s) x {procs} process(es)", flush=True)
    while True:  # a job a previous attempt finished is read at once
        state, reason = job_state(kind, custom.get_namespaced_custom_object(*coordinates, name))
        if state != "running":
            break
        time.sleep(poll_s)
    _print_rank0_logs(client.CoreV1Api(), ns, rank0_selector(kind, name))
    if state == "failed":
        raise TrainJobError(f"{api['kind']} {ns}/{name} failed: {reason or 'see the logs above'}")
    atomic_write(task.model_out, lambda t: shutil.copyfile(out / "generator.pth", t))
    return dict(json.loads((out / "metrics.json").read_text(encoding="utf-8")))


def _kind_env() -> str:
    import os

    return os.environ.get(KIND_ENV, "trainjob").lower()


def _exists(custom: CustomObjectsApi, coordinates: tuple[str, str, str, str], name: str) -> bool:
    from kubernetes import client

    try:
        custom.get_namespaced_custom_object(*coordinates, name)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _print_rank0_logs(core: CoreV1Api, namespace: str, selector: str, lines: int = 200) -> None:
    """The last ``lines`` of node 0's log into this task's log (best effort: pods may be gone)."""
    from kubernetes import client

    try:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        for pod in pods[:1]:
            name = pod.metadata.name if pod.metadata is not None else None
            if name is None:  # a listed pod has one; the client's models make every field optional
                continue
            text = core.read_namespaced_pod_log(name, namespace, tail_lines=lines)
            print(f"--- {name} (last {lines} lines) ---\n{text}", flush=True)
    except client.ApiException as exc:
        print(f"(no logs: {exc.status} {exc.reason})", file=sys.stderr)


# --- esrgan deploy trainjob ---------------------------------------------------------------------------


def add_deploy_parser(dsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``esrgan deploy trainjob`` (under ``esrgan deploy``)."""
    t = dsub.add_parser("trainjob", help="a Kubeflow TrainJob (or PyTorchJob) running 'esrgan train' on N pods")
    t.add_argument("stage", choices=["psnr", "gan"])
    t.add_argument("--config", "-c", type=Path, default=Path("params.yaml"), help="profile (read here and in the pods)")
    t.add_argument("--patches", required=True, help="patches folder on the shared volume (train/, val/)")
    t.add_argument("--out", "-o", required=True, help="run folder on the shared volume (resumes from it)")
    t.add_argument("--init", help="the PSNR generator to start the GAN stage from (on the volume)")
    t.add_argument("--kind", choices=sorted(KINDS), default="trainjob")
    t.add_argument("--nodes", type=int, help="pods (default: runtime.nodes)")
    t.add_argument("--gpus-per-node", type=int, help="default: runtime.processes when a number, else 1")
    t.add_argument("--procs-per-node", type=int, help="ranks per pod (default: the GPUs per node, at least 1)")
    t.add_argument("--image", help="default: the project's -cuda image of this version")
    t.add_argument("--name", help="default: esrgan-train-<stage>")
    t.add_argument("--namespace")
    t.add_argument("--pvc", default="esrgan-checkpoints", help="ReadWriteMany claim mounted in every pod")
    t.add_argument("--mount", default=DEFAULT_MOUNT)
    t.add_argument("--runtime", default=DEFAULT_RUNTIME, help="TrainJob runtimeRef (ClusterTrainingRuntime)")
    t.set_defaults(handler=_run_deploy)


def _run_deploy(args: argparse.Namespace) -> int:
    from pipeline.errors import ParamsError
    from pipeline.images import Images
    from pipeline.kfp.params import training_gpus
    from pipeline.params import batch_split_problems, load_params, params_document

    params = load_params(args.config)
    if args.stage == "gan" and not args.init:
        raise TrainJobError("deploy trainjob gan needs --init (the PSNR generator on the volume)")
    gpus = args.gpus_per_node if args.gpus_per_node is not None else training_gpus(params_document(params))
    procs = args.procs_per_node or max(1, gpus)
    nodes = args.nodes or params.runtime.nodes
    doc = params_document(params)
    doc["runtime"]["nodes"] = nodes
    problems = batch_split_problems(doc, procs)
    if problems:
        raise ParamsError(problems)
    command = ["pipeline.cli", "train", args.stage, "-c", str(args.config), "--patches", args.patches]
    command += ["-o", args.out, "--resume"] + (["--init", args.init] if args.init else [])
    spec = JobSpec(
        name=args.name or f"esrgan-train-{args.stage}",
        image=args.image or Images.for_version().cuda,
        command=command,
        nodes=nodes,
        procs_per_node=procs,
        gpus_per_node=gpus,
        namespace=args.namespace,
        pvc=args.pvc,
        mount=args.mount,
        runtime=args.runtime,
    )
    sys.stdout.write(to_yaml(manifest(args.kind, spec)))
    return 0
