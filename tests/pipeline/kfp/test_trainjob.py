"""Multi-node manifests (pipeline/kfp/trainjob.py) against the published API models, and ``esrgan deploy
trainjob``. No cluster runs here: the schema checks use the Kubeflow Trainer SDK's models
(``kubeflow-trainer-api``, generated from the TrainJob CRD's OpenAPI) and the Training Operator
SDK's (``kubeflow-training``, PyTorchJob). A manifest that survives a round trip through them
unchanged has no unknown field and no wrongly typed value (unknown keys are dropped on the way)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.kfp.trainjob import (
    SECRET_ENV,
    JobSpec,
    TrainJobError,
    job_state,
    pytorchjob_manifest,
    rank0_selector,
    trainjob_manifest,
)

REPO = Path(__file__).resolve().parents[3]
SPEC = JobSpec(
    name="esrgan-pretrain-psnr-0123456789abcdef",
    image="ghcr.io/owner/esrgan-pipeline:0.1.0-cuda",
    command=["pipeline.cli", "kfp", "train-task", "--stage", "pretrain_psnr"],
    nodes=3,
    procs_per_node=4,
    gpus_per_node=4,
    namespace="team",
)


def trainjob_round_trip(doc: dict[str, Any]) -> dict[str, Any]:
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    return TrainerV1alpha1TrainJob.from_dict(copy.deepcopy(doc)).to_dict()


def pytorchjob_round_trip(doc: dict[str, Any]) -> dict[str, Any]:
    from kubeflow.training.api_client import ApiClient

    class Response:  # what ApiClient.deserialize reads
        data = json.dumps(doc)

    client = ApiClient()
    return client.sanitize_for_serialization(client.deserialize(Response(), "KubeflowOrgV1PyTorchJob"))


def test_trainjob_matches_the_trainer_api_schema() -> None:
    doc = trainjob_manifest(SPEC)
    assert trainjob_round_trip(doc) == doc
    typo = copy.deepcopy(doc)
    typo["spec"]["trainer"]["numProcsPerNode"] = 4  # the check does catch a misspelt field
    assert trainjob_round_trip(typo) != typo


def test_trainjob_runs_the_image_under_torchrun_on_the_torch_runtime() -> None:
    doc = trainjob_manifest(SPEC)
    assert (doc["apiVersion"], doc["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert doc["metadata"]["namespace"] == "team"
    assert doc["spec"]["runtimeRef"] == {"name": "torch-distributed"}
    trainer = doc["spec"]["trainer"]
    # torchrun takes nodes, ranks per node and the rendezvous from the runtime's PET_* variables
    assert trainer["command"] == ["torchrun"] and trainer["args"] == ["-m", *SPEC.command]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 4)
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "4"}
    assert trainer["image"] == SPEC.image
    (patch,) = doc["spec"]["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = job["template"]["spec"]["template"]["spec"]
    assert job["name"] == "node" and pod["containers"][0]["name"] == "node"  # the runtime's job and container
    assert pod["volumes"] == [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": "esrgan-checkpoints"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "checkpoints", "mountPath": "/mnt/checkpoints"}]


def test_pytorchjob_matches_the_training_operator_schema() -> None:
    doc = pytorchjob_manifest(SPEC)
    assert pytorchjob_round_trip(doc) == doc
    typo = copy.deepcopy(doc)
    typo["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    assert pytorchjob_round_trip(typo) != typo


def test_pytorchjob_is_one_master_and_n_minus_1_workers() -> None:
    doc = pytorchjob_manifest(SPEC)
    assert (doc["apiVersion"], doc["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    replicas = doc["spec"]["pytorchReplicaSpecs"]
    assert {k: v["replicas"] for k, v in replicas.items()} == {"Master": 1, "Worker": 2}
    for replica in replicas.values():
        (container,) = replica["template"]["spec"]["containers"]
        assert container["name"] == "pytorch" and container["command"] == ["torchrun"]
        args = container["args"]
        assert args[: args.index("-m")] == [
            "--nnodes=3",
            "--nproc-per-node=4",
            "--node-rank=$(RANK)",
            "--master-addr=$(MASTER_ADDR)",
            "--master-port=$(MASTER_PORT)",
        ]
        assert args[args.index("-m") + 1 :] == list(SPEC.command)
        assert container["resources"]["limits"] == {"nvidia.com/gpu": "4"}
    single = pytorchjob_manifest(JobSpec(**{**SPEC.__dict__, "nodes": 1}))
    assert set(single["spec"]["pytorchReplicaSpecs"]) == {"Master"}


@pytest.mark.parametrize("build", [trainjob_manifest, pytorchjob_manifest])
def test_credentials_come_from_the_kfp_secrets_never_literals(build: Any) -> None:
    doc = build(SPEC)
    text = json.dumps(doc)
    env = (
        doc["spec"]["trainer"]["env"]
        if doc["kind"] == "TrainJob"
        else (doc["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["env"])
    )
    refs = {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"], e["name"])
        for e in env
        if "valueFrom" in e
    }
    assert refs == set(SECRET_ENV)
    from pipeline.kfp.dag import MLFLOW_SECRET, MLFLOW_SECRET_ENV, S3_SECRET, S3_SECRET_ENV, S3_SECRET_ENV_MLFLOW

    kfp = {(MLFLOW_SECRET, k, v) for k, v in MLFLOW_SECRET_ENV.items()}
    kfp |= {(S3_SECRET, k, v) for k, v in {**S3_SECRET_ENV}.items()} | {
        (S3_SECRET, k, v) for k, v in S3_SECRET_ENV_MLFLOW.items()
    }
    assert refs == kfp  # the same secrets as the KFP tasks
    assert "password" not in {e["name"].lower() for e in env if "value" in e} and "AKIA" not in text


def test_a_bad_job_name_is_refused() -> None:
    with pytest.raises(TrainJobError, match="job name"):
        trainjob_manifest(JobSpec(**{**SPEC.__dict__, "name": "Esrgan_Train"}))


@pytest.mark.parametrize(
    ("kind", "conditions", "state"),
    [
        ("trainjob", [], "running"),
        ("trainjob", [{"type": "Created", "status": "True"}], "running"),
        ("trainjob", [{"type": "Complete", "status": "True", "message": "done"}], "succeeded"),
        ("trainjob", [{"type": "Failed", "status": "True", "message": "node 1 OOMKilled"}], "failed"),
        ("trainjob", [{"type": "Failed", "status": "False"}], "running"),
        ("pytorchjob", [{"type": "Running", "status": "True"}], "running"),
        ("pytorchjob", [{"type": "Succeeded", "status": "True"}], "succeeded"),
        ("pytorchjob", [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}], "failed"),
    ],
)
def test_job_state_reads_the_conditions(kind: Any, conditions: list[dict[str, str]], state: str) -> None:
    assert job_state(kind, {"status": {"conditions": conditions}})[0] == state


def test_job_state_reports_the_failure_message() -> None:
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "message": "node 1 OOMKilled"}]}}
    assert job_state("trainjob", failed) == ("failed", "node 1 OOMKilled")
    assert "job-completion-index=0" in rank0_selector("trainjob", "j")
    assert "replica-type=master" in rank0_selector("pytorchjob", "j")


def _deploy(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pipeline.cli", "deploy", "trainjob", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_deploy_trainjob_prints_a_valid_manifest_that_resumes(tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["pretrain_psnr"]["data"]["batch_size"] = 8
    params["finetune_gan"]["data"]["batch_size"] = 4
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    common = ["--patches", "/mnt/checkpoints/patches", "-o", "/mnt/checkpoints/runs/gan", "--init", "/mnt/m.pth"]
    done = _deploy("gan", "-c", str(tmp_path / "p.yaml"), *common, "--nodes", "2", "--gpus-per-node", "2")
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(done.stdout)
    assert trainjob_round_trip(doc) == doc
    args = doc["spec"]["trainer"]["args"]
    assert args[:4] == ["-m", "pipeline.cli", "train", "gan"] and "--resume" in args
    assert args[args.index("--init") + 1] == "/mnt/m.pth"
    assert (doc["spec"]["trainer"]["numNodes"], doc["spec"]["trainer"]["numProcPerNode"]) == (2, 2)
    done = _deploy("gan", "-c", str(tmp_path / "p.yaml"), *common, "--kind", "pytorchjob", "--nodes", "2")
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(done.stdout)
    assert pytorchjob_round_trip(doc) == doc


def test_deploy_trainjob_refuses_a_batch_that_does_not_split() -> None:
    # the demo's GAN batch of 2 cannot split over 2 nodes x 2 processes
    common = ["--patches", "/p", "-o", "/o", "--nodes", "2", "--gpus-per-node", "2"]
    done = _deploy("psnr", *common)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "esrgan: error: finetune_gan.data.batch_size (2) is the global batch and must split evenly over 4 "
        "training processes (runtime.processes 2 x runtime.nodes 2)"
    ]


def test_a_kfp_task_with_nodes_runs_its_own_entry_point_on_the_volume(tmp_path: Path) -> None:
    """What a training task with runtime.nodes > 1 creates: its inputs copied onto the volume, and
    every pod running the ranks' entry point (esrgan kfp train-task) on them."""
    from pipeline.kfp.train_task import TrainTask
    from pipeline.kfp.trainjob import task_job
    from pipeline.params import parse_params

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["runtime"].update(device="cuda", processes="auto", nodes=2)
    mount, task = tmp_path / "mnt", tmp_path / "task"
    (task / "patches" / "train").mkdir(parents=True)
    (task / "patches" / "train" / "a.png").write_bytes(b"png")
    (task / "config").write_text("{}")
    (task / "psnr.pth").write_bytes(b"weights")
    run_dir = mount / "0123456789abcdef" / "finetune_gan"
    here = TrainTask(
        "finetune_gan",
        task / "config",
        task / "patches",
        task / "psnr.pth",
        run_dir,
        task / "model" / "generator.pth",
        task / "metrics.json",
        {"kfp.run_id": "r1"},
    )
    doc, out = task_job(
        here,
        parse_params(params),
        gpus=1,
        pvc="team-checkpoints",
        mount=str(mount),
        image="registry/esrgan:1-cuda",
    )
    assert trainjob_round_trip(doc) == doc
    key = mount / "0123456789abcdef"
    assert (key / "patches" / "train" / "a.png").read_bytes() == b"png"
    assert (key / "finetune_gan-inputs" / "init.pth").read_bytes() == b"weights"
    assert out == key / "finetune_gan-outputs"
    trainer = doc["spec"]["trainer"]
    assert doc["metadata"]["name"] == "esrgan-finetune-gan-0123456789abcdef"
    assert (trainer["numNodes"], trainer["numProcPerNode"], trainer["image"]) == (2, 1, "registry/esrgan:1-cuda")
    assert trainer["args"] == [
        "-m", "pipeline.cli", "kfp", "train-task", "--stage", "finetune_gan",
        "--config", str(key / "finetune_gan-inputs" / "config.json"), "--patches", str(key / "patches"),
        "--run-dir", str(run_dir), "--model-out", str(out / "generator.pth"), "--metrics", str(out / "metrics.json"),
        "--init", str(key / "finetune_gan-inputs" / "init.pth"), "--tag", "kfp.run_id=r1",
    ]  # fmt: skip
    pod = doc["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    volume = pod["template"]["spec"]["template"]["spec"]
    assert volume["volumes"][0]["persistentVolumeClaim"] == {"claimName": "team-checkpoints"}
    assert volume["containers"][0]["volumeMounts"][0]["mountPath"] == str(mount)
    with pytest.raises(TrainJobError, match="must lie on the volume"):
        elsewhere = TrainTask("pretrain_psnr", task / "config", task / "patches", None,
                              tmp_path / "elsewhere" / "k" / "s", task / "g.pth", task / "m.json")  # fmt: skip
        task_job(elsewhere, parse_params(params), 1, "c", mount=str(mount))
