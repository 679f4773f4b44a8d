"""End to end: ``dvc repro`` on a tiny configuration against a real ``mlflow server``, then the
registered champion served by a real ``mlflow models serve`` and queried over HTTP."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.e2e.project import make_project, run
from tests.e2e.servers import mlflow_server, model_server, post_invocations

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


MAIN_OUTPUT: dict[str, str] = {}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tracking_uri: str) -> Path:
    """The README's main job (``esrgan main``) on a fresh clone without data/, tiny params."""
    root = make_project(tmp_path_factory.mktemp("project"))
    assert not (root / "data").exists()
    result = run(["esrgan", "main"], root, timeout=900, MLFLOW_TRACKING_URI=tracking_uri)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    MAIN_OUTPUT["stdout"] = result.stdout
    return root


def test_main_job_prints_the_champion(project: Path, tracking_uri: str) -> None:
    out = MAIN_OUTPUT["stdout"]
    registered = json.loads((project / "outputs" / "registered.json").read_text())
    assert "HR dataset: rebuilt the sample set" in out
    assert (
        f"champion: esrgan-x4 version {registered['version']} (alias @champion), alpha {registered['alpha']:g}" in out
    )
    # A deep link to the experiment's runs page, not the UI's home (which opens in the GenAI view).
    name = yaml.safe_load((project / "params.yaml").read_text())["tracking"]["experiment"]
    experiment_id = client(tracking_uri).get_experiment_by_name(name).experiment_id
    assert f"compare runs:  open {tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs" in out
    assert "psnr_y" in out


def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def png_b64(h: int, w: int) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_rebuilt_sample_data_matches_the_committed_data_dvc(project: Path) -> None:
    assert run(["git", "status", "--porcelain", "data.dvc"], project).stdout == ""
    status = run(["dvc", "status", "--json", "data.dvc"], project)
    assert status.returncode == 0 and json.loads(status.stdout) == {}


def test_champion_is_registered_with_alias_and_tags(project: Path, tracking_uri: str) -> None:
    registered = json.loads((project / "outputs" / "registered.json").read_text())
    version = client(tracking_uri).get_model_version_by_alias("esrgan-x4", "champion")
    assert version.version == registered["version"] == "1"
    assert float(version.tags["alpha"]) == registered["alpha"]
    assert registered["alpha"] in (0.0, 0.5, 1.0)
    assert float(version.tags["psnr_y"]) == pytest.approx(registered["metrics"]["psnr_y"], abs=1e-4)


def test_metrics_files_and_perception_distortion_plot(project: Path) -> None:
    summary = json.loads((project / "outputs/metrics/summary.json").read_text())
    assert [row["alpha"] for row in summary["alphas"]] == [0.0, 0.5, 1.0]
    assert summary["bicubic"]["psnr_y"] > 20  # the real bicubic baseline on a real photo
    for row in summary["alphas"]:
        assert row["niqe"] is not None and row["lpips_alex"] is None  # no ImageNet trunk offline
        assert row["stlpips_alex"] is not None and "stlpips_vgg" not in row  # evaluate.skip_metrics
    baseline = json.loads((project / "outputs/baseline/bicubic.json").read_text())
    report = json.loads((project / "outputs/evaluation/alpha_0.5.json").read_text())
    assert report["bicubic"] == baseline["bicubic"] and "stlpips_vgg" not in report["metrics"]
    shown = run(["dvc", "metrics", "show", "--json"], project)
    assert shown.returncode == 0
    assert "outputs/metrics/evaluate_alpha_0.5.json" in shown.stdout
    rows = (project / "outputs/plots/perception_distortion.csv").read_text().splitlines()
    assert rows[0].startswith("alpha,psnr_y") and len(rows) == 4
    png = Image.open(project / "outputs/plots/perception_distortion.png")
    assert png.format == "PNG" and png.size[0] > 400
    plots = run(["dvc", "plots", "show", "--json"], project)
    assert plots.returncode == 0 and "perception_distortion.csv" in plots.stdout


def test_runs_are_nested_under_one_parent_with_provenance(project: Path, tracking_uri: str) -> None:
    c = client(tracking_uri)
    exp = c.get_experiment_by_name("esrgan")
    runs = c.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    stages = sorted(r.data.tags["esrgan.stage"] for r in children)
    assert stages == ["evaluate"] * 3 + ["extract_patches", "finetune_gan", "pretrain_psnr", "register"]
    for r in runs:
        assert len(r.data.tags["git.commit"]) == 40 and r.data.tags["data.dvc.md5"].endswith(".dir")
    psnr_run = next(r for r in children if r.data.tags["esrgan.stage"] == "pretrain_psnr")
    history = c.get_metric_history(psnr_run.info.run_id, "loss_pixel")
    assert [m.step for m in history] == [2, 4, 6]
    assert psnr_run.data.params["pretrain_psnr.iterations"] == "6"
    evaluate_run = next(r for r in children if r.data.tags["esrgan.stage"] == "evaluate")
    artifacts = [a.path for a in c.list_artifacts(evaluate_run.info.run_id, "samples")]
    assert any(p.endswith("_lr_bicubic_sr_hr.png") for p in artifacts)


def test_nothing_changed_means_nothing_runs(project: Path, tracking_uri: str) -> None:
    lock = (project / "dvc.lock").read_text()
    result = run(["dvc", "repro"], project, MLFLOW_TRACKING_URI=tracking_uri)
    assert result.returncode == 0
    # resolve_init checks the init sources every time (an alias can move unseen); equal weights
    # keep their bytes, so nothing after it runs.
    assert ran_stages(result.stdout) == ["resolve_init"]
    assert "Stage 'register' didn't change, skipping" in result.stdout
    assert (project / "dvc.lock").read_text() == lock


def ran_stages(stdout: str) -> list[str]:
    return sorted(line.split("'")[1] for line in stdout.splitlines() if line.startswith("Running stage"))


def test_served_champion_upscales_and_rejects_bad_requests(project: Path, tracking_uri: str, tmp_path: Path) -> None:
    with model_server("models:/esrgan-x4@champion", tmp_path, tracking_uri, ESRGAN_MAX_INPUT_PIXELS="400") as url:
        status, body = post_invocations(url, {"dataframe_split": {"columns": ["image"], "data": [[png_b64(10, 12)]]}})
        assert status == 200
        pred = body["predictions"][0]
        out = Image.open(io.BytesIO(base64.b64decode(pred["image"])))
        assert out.size == (48, 40) and (pred["width"], pred["height"]) == (48, 40)

        for bad, reason in (
            ([["not base64 at all!"]], "not valid base64"),
            ([[base64.b64encode(b"hello").decode()]], "not a readable image"),
            ([[png_b64(30, 30)]], "exceeds the server limit of 400 pixels"),
        ):
            status, body = post_invocations(url, {"dataframe_split": {"columns": ["image"], "data": bad}})
            assert status == 400 and reason in body["message"]
        status, body = post_invocations(url, {"dataframe_split": {"columns": ["picture"], "data": [[png_b64(4, 4)]]}})
        assert status == 400 and "image" in body["message"]


def test_upscale_cli_reads_the_registry(project: Path, tracking_uri: str, tmp_path: Path) -> None:
    img = tmp_path / "in.png"
    Image.fromarray(np.zeros((6, 7, 3), np.uint8)).save(img)
    result = run(
        ["esrgan", "upscale", str(img), "-m", "models:/esrgan-x4@champion", "-o", str(tmp_path / "out")],
        project,
        MLFLOW_TRACKING_URI=tracking_uri,
    )
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out" / "in_x4.png").size == (28, 24)


def test_changing_only_the_alphas_reruns_only_their_stages(project: Path, tracking_uri: str) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["interpolate"]["alphas"] = [0.0, 0.25, 1.0]  # 0.5 leaves the sweep, 0.25 joins it
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["dvc", "repro"], project, timeout=600, MLFLOW_TRACKING_URI=tracking_uri)
    assert result.returncode == 0, result.stderr[-2000:]
    assert ran_stages(result.stdout) == ["evaluate@0.25", "interpolate@0.25", "register", "resolve_init"]
    # The removed alpha's files are gone (a reader sees only the current sweep) and DVC agrees.
    for folder, suffix in (("outputs/interpolated", ".pth"), ("outputs/evaluation", ".json")):
        names = sorted(p.name for p in (project / folder).glob("alpha_*"))
        assert names == [f"alpha_{a}{suffix}" for a in (0.0, 0.25, 1.0)], names
    status = run(["dvc", "status", "--json"], project, MLFLOW_TRACKING_URI=tracking_uri)
    assert status.returncode == 0 and json.loads(status.stdout) == {"resolve_init": ["always changed"]}, status.stdout
    # The rerun registers version 2 as the challenger; the gate moves @champion only if it is at
    # least as good on the same images, and records why either way.
    c = client(tracking_uri)
    challenger = c.get_model_version_by_alias("esrgan-x4", "challenger")
    assert challenger.version == "2"
    champion = c.get_model_version_by_alias("esrgan-x4", "champion")
    decision = challenger.tags["decision"]
    assert decision in ("promoted", "kept-champion"), challenger.tags
    assert champion.version == ("2" if decision == "promoted" else "1"), (decision, challenger.tags["decision.reason"])


def test_continuing_from_the_champion_on_new_photos(project: Path, tracking_uri: str, tmp_path: Path) -> None:
    """The second run of the main job fine-tunes the registry's champion on other photos: the GAN
    stage starts from the version the alias pointed to, the lineage reaches the new version, and
    the gate decides between the two."""
    c = client(tracking_uri)
    before = c.get_model_version_by_alias("esrgan-x4", "champion")
    photos = tmp_path / "photos"
    assert run(["esrgan", "data", "holdout", str(photos)], project).returncode == 0
    imported = run(["esrgan", "data", "import", str(photos), "--val-fraction", "0.3", "--force"], project)
    assert imported.returncode == 0, imported.stderr[-2000:]
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune_gan"]["init"]["generator"] = "models:/esrgan-x4@champion"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cache = tmp_path / "cache"
    result = run(["esrgan", "main"], project, timeout=900, MLFLOW_TRACKING_URI=tracking_uri, ESRGAN_CACHE=str(cache))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((project / "outputs" / "init" / "finetune_gan" / "source.json").read_text())
    assert record["generator"]["resolved"] == f"models:/esrgan-x4/{before.version} (run {before.run_id})"
    registered = json.loads((project / "outputs" / "registered.json").read_text())
    new = c.get_model_version("esrgan-x4", registered["version"])
    assert int(new.version) > int(before.version)
    lineage = new.tags["finetune_gan.init.generator"]
    assert lineage.startswith(f"models:/esrgan-x4/{before.version} (run {before.run_id}) (sha256 ")
    assert f"Fine-tuned from models:/esrgan-x4/{before.version}" in new.description
    assert registered["decision"] in ("promoted", "kept-champion") and new.tags["decision"] == registered["decision"]
    champion = c.get_model_version_by_alias("esrgan-x4", "champion")
    assert champion.version == (new.version if registered["decision"] == "promoted" else before.version)
