"""End to end: the whole KFP pipeline run locally (kfp.local SubprocessRunner) on the tiny
configuration and the sample data, ending with the champion in a local SQLite MLflow registry."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
import torch
import yaml

from esrgan.models import RRDBNet, save_generator
from tests.e2e.project import FAST_KFP_OVERRIDES, REPO, run, tiny_params

pytestmark = pytest.mark.slow

#: Where a run with the defaults would write in the repository (this test must not).
WOULD_BE_WRITTEN = (REPO / "mlflow.db", REPO / "mlruns", REPO / "outputs" / "kfp-local", REPO / "pipeline.yaml")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from esrgan.data import build_sample_dataset

    root = tmp_path_factory.mktemp("kfp-local")
    # Stage 1 from released weights, as they are (iterations 0): the task fetches its source itself.
    torch.manual_seed(0)
    save_generator(RRDBNet(**tiny_params()["model"]), root / "RRDB_PSNR_x4.pth")
    params = tiny_params()
    params["pretrain_psnr"].update(
        iterations=0, init={"generator": str(root / "RRDB_PSNR_x4.pth"), "param_key": "auto"}
    )
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    build_sample_dataset(root / "data")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    before = {p: p.exists() and p.stat().st_mtime for p in WOULD_BE_WRITTEN}
    result = run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "kfp",
            "run-local",
            "--params",
            "params.yaml",
            "--data",
            "data",
            "--workdir",
            "work",
            *FAST_KFP_OVERRIDES,
        ],
        root,
        timeout=400,
        MLFLOW_TRACKING_URI=uri,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert {p: p.exists() and p.stat().st_mtime for p in WOULD_BE_WRITTEN} == before, "wrote into the repository"
    registered = (root / "work" / "registered.json").read_text()
    return {"root": root, "uri": uri, "record": json.loads(registered), "stdout": result.stdout, "file": registered}


def test_champion_is_registered_with_alias_and_alpha_tag(local_run: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    record = local_run["record"]
    client = MlflowClient(tracking_uri=local_run["uri"])
    version = client.get_model_version_by_alias("esrgan-x4", "champion")
    assert str(version.version) == record["version"] == "1"  # the SQLite store answers an int
    assert record["alias"] == "champion" and record["alpha"] == 0.5
    assert float(version.tags["alpha"]) == record["alpha"]
    assert float(version.tags["psnr_y"]) == pytest.approx(record["metrics"]["psnr_y"], abs=1e-4)
    assert version.run_id == record["register_run_id"]
    released = local_run["root"] / "RRDB_PSNR_x4.pth"
    assert version.tags["pretrain_psnr.init.generator"].startswith(f"{released.resolve()} (sha256 ")
    assert f"Fine-tuned from {released.resolve()}" in version.description


def test_stage_runs_nest_under_one_finished_parent_tagged_with_the_kfp_run(local_run: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=local_run["uri"])
    runs = client.search_runs([client.get_experiment_by_name("esrgan").experiment_id], max_results=100)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED" and parent.info.run_id == local_run["record"]["pipeline_run_id"]
    assert parent.data.tags["esrgan.launcher"] == "kubeflow" and parent.data.tags["kfp.run_id"]
    stages = sorted(r.data.tags["esrgan.stage"] for r in runs if r is not parent)
    assert stages == ["evaluate"] * 3 + ["extract_patches", "finetune_gan", "pretrain_psnr", "register"]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs if r is not parent} == {parent.info.run_id}


def test_kfp_artifacts_hold_the_plot_and_the_checkpoints(local_run: dict[str, Any]) -> None:
    work = local_run["root"] / "work"
    (plot,) = work.glob("artifacts/*/register/plot")
    assert "data:image/png;base64," in plot.read_text()
    (csv,) = work.glob("artifacts/*/register/plot_data")
    assert csv.read_text().splitlines()[0].startswith("alpha,psnr_y") and len(csv.read_text().splitlines()) == 4
    (key,) = [p.name for p in (work / "checkpoints").iterdir()]
    assert {p.name for p in (work / "checkpoints" / key).iterdir()} == {"pretrain_psnr", "finetune_gan"}


def test_the_command_prints_the_record_unindented_after_the_run(local_run: dict[str, Any]) -> None:
    """kfp.local can leave its indenting ``print`` installed after a ParallelFor; the command puts the
    original back, so what it prints after the run (and any later print in the process) is intact."""
    assert local_run["stdout"].endswith("\n" + local_run["file"])
