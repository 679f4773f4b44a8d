"""Champion/challenger against a real ``mlflow server``: the register step on crafted evaluation
reports and tiny generators (the decision is the same as after a full ``dvc repro``; see
``test_dvc_pipeline.py`` for the pipeline itself), then the ``esrgan registry`` commands.

The scenario runs in order: first run promoted, a worse run kept as challenger, a better run
on other data (the champion re-evaluated on the new images) promoted, a forced promotion, two
rollbacks, a manual promotion, then worse runs against a champion whose figure was deleted or
spoiled by hand (measured again, kept).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from esrgan.models import RRDBNet, save_generator
from pipeline.registry.aliases import HISTORY_TAG
from pipeline.steps.context import StepContext
from pipeline.steps.register import register_step
from tests.e2e.project import run, tiny_params
from tests.e2e.servers import mlflow_server

pytestmark = pytest.mark.slow
NAME = "esrgan-x4"
ALPHAS = (0.0, 0.5, 1.0)
STATE: dict[str, Any] = {}


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root as the register stage sees it: params.yaml, data.dvc, data/val."""
    root = tmp_path_factory.mktemp("project")
    params = tiny_params()
    params["evaluate"]["max_images"] = None  # the champion is re-evaluated on both validation images
    params["register"]["selection"]["metric"] = "niqe"  # the crafted reports below carry NIQE
    params["register"]["selection"]["psnr_margin_db"] = 1.0  # the crafted reports below are built around 1 dB
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    set_data(root, "aaaa1111.dir", seed=0)
    return root


def set_data(root: Path, md5: str, seed: int) -> None:
    """A dataset version: its DVC hash and two validation images (smooth, so NIQE is defined)."""
    (root / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": md5, "path": "data"}]}))
    val = root / "data" / "val"
    shutil.rmtree(val, ignore_errors=True)
    val.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:192, 0:192]
    for i in range(2):
        base = 127 + 100 * np.sin(xx / (9 + 4 * i + seed)) * np.cos(yy / (13 + seed))
        img = np.clip(base[..., None] + rng.normal(0, 8, (192, 192, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(val / f"img{i}.png")


def generators(root: Path, seed: int) -> dict[float, Path]:
    out = {}
    folder = root / f"generators_{seed}"
    folder.mkdir(exist_ok=True)
    for i, alpha in enumerate(ALPHAS):
        torch.manual_seed(seed * 10 + i)
        out[alpha] = folder / f"alpha_{alpha}.pth"
        save_generator(RRDBNet(num_feat=8, num_block=1, num_grow=4), out[alpha])
    return out


def reports(root: Path, run_name: str, niqe: dict[float, float], psnr: dict[float, float]) -> list[Path]:
    folder = root / "reports" / run_name
    folder.mkdir(parents=True)
    paths = []
    for alpha in ALPHAS:
        path = folder / f"alpha_{alpha}.json"
        mean = {"psnr_y": psnr[alpha], "ssim_y": 0.7, "psnr_rgb": psnr[alpha] - 1, "niqe": niqe[alpha]}
        bicubic = {"psnr_y": 24.0, "ssim_y": 0.65, "psnr_rgb": 23.0, "niqe": 7.5}
        path.write_text(json.dumps({"alpha": alpha, "model": {"mean": mean}, "bicubic": {"mean": bicubic}}))
        paths.append(path)
    return paths


def register(
    root: Path, run_name: str, niqe: dict[float, float], psnr: dict[float, float], seed: int, force: bool = False
) -> dict[str, Any]:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["register"]["force_promote"] = force
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ctx = StepContext.load(root)
    out = root / "outputs" / run_name
    models = generators(root, seed)
    STATE.setdefault("models", {})[run_name] = models
    return register_step(
        ctx,
        reports(root, run_name, niqe, psnr),
        models,
        out / "summary.json",
        out / "pd.csv",
        out / "pd.png",
        out / "registered.json",
    )


def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def aliases(uri: str) -> dict[str, str]:
    return {a: str(v) for a, v in client(uri).get_registered_model(NAME).aliases.items()}


@pytest.fixture
def env_uri(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.delenv("ESRGAN_PIPELINE_RUN_ID", raising=False)
    return tracking_uri


def test_first_run_becomes_champion_with_descriptions_and_onnx(project: Path, env_uri: str) -> None:
    rec = register(project, "run1", niqe={0.0: 6.0, 0.5: 5.0, 1.0: 4.0}, psnr={0.0: 26.0, 0.5: 25.5, 1.0: 24.5}, seed=1)
    # alpha 1 has the lowest NIQE but is 1.5 dB below alpha 0: the rule picks 0.5.
    assert rec["alpha"] == 0.5 and rec["version"] == "1" and rec["decision"] == "promoted"
    assert aliases(env_uri) == {"champion": "1", "challenger": "1"}
    saved = json.loads((project / "outputs/run1/registered.json").read_text())
    assert saved == json.loads(json.dumps(rec)) and "no champion yet" in saved["reason"]
    c = client(env_uri)
    model = c.get_registered_model(NAME)
    assert model.tags[HISTORY_TAG] == "1"
    assert "ESRGAN x4" in model.description and "@champion" in model.description
    mv = c.get_model_version(NAME, "1")
    assert mv.tags["decision"] == "promoted" and mv.tags["alpha"] == "0.5" and mv.tags["niqe"] == "5.0000"
    assert mv.tags["data.dvc.md5"] == "aaaa1111.dir"
    for text in (
        "alpha 0.5",
        "niqe 5.0000",
        "aaaa1111.dir",
        "git commit",
        "Gate: **promoted**",
        f"{env_uri}/#/experiments/",
        rec["pipeline_run_id"],
        "within 1 dB",
    ):
        assert text in mv.description, text
    run = c.get_run(rec["register_run_id"])
    assert run.data.tags["decision"] == "promoted" and run.data.tags["champion_version"] == "1"
    experiment = c.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    # The version carries an ONNX export of exactly the registered generator.
    import mlflow

    from esrgan.export import run_onnx
    from esrgan.models import load_generator

    onnx_file = Path(mlflow.artifacts.download_artifacts(rec["onnx_uri"], dst_path=str(project / "dl")))
    x = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        ref = load_generator(STATE["models"]["run1"][0.5])(x)
    assert (run_onnx(onnx_file, x) - ref).abs().max().item() < 1e-4


def test_worse_second_run_leaves_champion_and_sets_challenger(project: Path, env_uri: str) -> None:
    rec = register(project, "run2", niqe={0.0: 6.5, 0.5: 5.8, 1.0: 5.6}, psnr={0.0: 26.0, 0.5: 25.6, 1.0: 25.2}, seed=2)
    assert rec["alpha"] == 1.0 and rec["version"] == "2"
    assert rec["decision"] == "kept-champion" and rec["alias"] == "challenger" and rec["champion_version"] == "1"
    assert "challenger niqe 5.6000 > champion's 5.0000" in rec["reason"]
    assert "recorded figures" in rec["comparison"]["compared_on"]  # same data: no re-evaluation
    assert aliases(env_uri) == {"champion": "1", "challenger": "2"}
    tags = client(env_uri).get_model_version(NAME, "2").tags
    assert tags["decision"] == "kept-champion" and tags["decision.champion_version"] == "1"
    assert tags["decision.challenger.niqe"] == "5.6000" and tags["decision.champion.niqe"] == "5.0000"
    assert client(env_uri).get_registered_model(NAME).tags[HISTORY_TAG] == "1"


def test_run_on_other_data_reevaluates_the_champion_on_its_images(project: Path, env_uri: str) -> None:
    from esrgan.evaluation import evaluate_folder
    from esrgan.models import load_generator

    set_data(project, "bbbb2222.dir", seed=1)
    # Figures on the new images: the champion's recorded 5.0 NIQE came from other data and must not count.
    expected = evaluate_folder(
        load_generator(STATE["models"]["run1"][0.5]),
        project / "data/val",
        scale=4,
        metrics=("psnr_y", "niqe"),
        progress=False,
    )["model"]["mean"]
    good = expected["niqe"] - 0.01
    rec = register(
        project,
        "run3",
        niqe={0.0: good + 1, 0.5: good, 1.0: good + 2},
        psnr={0.0: expected["psnr_y"], 0.5: expected["psnr_y"] - 0.5, 1.0: 0.0},
        seed=3,
    )
    assert "re-evaluated" in rec["comparison"]["compared_on"] and "bbbb2222.dir" in rec["comparison"]["compared_on"]
    assert rec["comparison"]["champion"]["niqe"] == pytest.approx(expected["niqe"], abs=1e-6)
    assert rec["comparison"]["champion"]["psnr_y"] == pytest.approx(expected["psnr_y"], abs=1e-6)
    assert rec["decision"] == "promoted" and rec["version"] == "3"
    assert aliases(env_uri) == {"champion": "3", "challenger": "3"}
    assert client(env_uri).get_registered_model(NAME).tags[HISTORY_TAG] == "1,3"


def test_forced_promotion_of_a_worse_model_is_recorded(project: Path, env_uri: str) -> None:
    rec = register(
        project,
        "run4",
        niqe={0.0: 50.0, 0.5: 40.0, 1.0: 30.0},
        psnr={0.0: 20.0, 0.5: 19.8, 1.0: 19.5},
        seed=4,
        force=True,
    )
    assert rec["decision"] == "promoted" and rec["forced"] and rec["reason"] == "forced by register.force_promote"
    assert aliases(env_uri) == {"champion": "4", "challenger": "4"}
    assert client(env_uri).get_model_version(NAME, "4").tags["decision.champion.niqe"]  # the loser's figures kept


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``esrgan registry ...`` in this process (the console script's ``main``), output captured."""
    from pipeline.cli import main

    # main() sets these defaults in os.environ; monkeypatch restores them afterwards.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

    def call(uri: str, *args: str) -> Result:
        capsys.readouterr()
        code = main(["registry", "--tracking-uri", uri, *args])
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return call


def test_registry_list_shows_versions_aliases_and_history(tracking_uri: str, cli: Any) -> None:
    # Once through the installed console script, as a user runs it.
    result = run(["esrgan", "registry", "--tracking-uri", tracking_uri, "list"], Path.cwd(), timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "registered model esrgan-x4: 4 version(s)"
    assert lines[1].split()[:3] == ["version", "aliases", "alpha"] and len(lines) == 7
    assert [line.split()[0] for line in lines[2:6]] == ["4", "3", "2", "1"]
    assert lines[2].split()[1] == "challenger,champion" and lines[4].split()[1] == "1"  # v2: no alias, alpha 1
    assert lines[5].split()[1:4] == ["0.5", "25.5000", "0.7000"]
    assert "kept-champion" in lines[4] and "aaaa1111.dir" in lines[4] and "bbbb2222.dir" in lines[3]
    assert lines[-1] == "champion history (oldest first): 1 -> 3 -> 4"
    as_json = json.loads(cli(tracking_uri, "list", "--json").stdout)
    assert [v["version"] for v in as_json["versions"]] == ["4", "3", "2", "1"]
    assert as_json["versions"][2]["aliases"] == [] and as_json["champion_history"] == ["1", "3", "4"]


def test_rollback_twice_then_nothing_left(tracking_uri: str, cli: Any) -> None:
    first = cli(tracking_uri, "rollback")
    assert first.returncode == 0 and first.stdout.startswith("esrgan-x4@champion: version 4 -> 3"), first.stderr
    assert aliases(tracking_uri)["champion"] == "3"
    second = cli(tracking_uri, "rollback")  # after two promotions (1 then 3) the first one is back
    assert second.returncode == 0 and "version 3 -> 1" in second.stdout
    assert aliases(tracking_uri)["champion"] == "1"
    assert client(tracking_uri).get_registered_model(NAME).tags[HISTORY_TAG] == "1"
    assert "rolled_back" in client(tracking_uri).get_model_version(NAME, "3").tags
    third = cli(tracking_uri, "rollback")
    assert third.returncode == 2 and aliases(tracking_uri)["champion"] == "1"
    assert third.stderr.strip() == (
        "esrgan: error: registered model 'esrgan-x4': version 1 is the first champion, nothing to roll back to"
    )


def test_manual_promotion_and_clear_errors(tracking_uri: str, cli: Any) -> None:
    done = cli(tracking_uri, "promote", "3")
    assert done.returncode == 0 and "version 1 -> 3" in done.stdout and "(history: 1 -> 3)" in done.stdout
    tags = client(tracking_uri).get_model_version(NAME, "3").tags
    assert tags["decision"] == "promoted-by-hand" and "rolled_back" not in tags
    for args, message in (
        (("promote", "99"), "registered model 'esrgan-x4': "),
        (("promote", "two"), "version 'two': expected a version number"),
        (("--model-name", "nope", "list"), "registered model 'nope': "),
    ):
        bad = cli(tracking_uri, *args)
        assert bad.returncode == 2 and bad.stderr.startswith(f"esrgan: error: {message}"), bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    assert aliases(tracking_uri)["champion"] == "3"


def test_unreachable_tracking_server_is_one_line(cli: Any) -> None:
    from tests.e2e.servers import free_port

    bad = cli(f"http://127.0.0.1:{free_port()}", "list")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert bad.stderr.startswith("esrgan: error:")


@pytest.mark.parametrize("bad", [None, "nan", "abc"], ids=["deleted", "nan", "abc"])
def test_champion_with_an_unusable_figure_is_measured_again_not_beaten(
    project: Path, env_uri: str, bad: str | None
) -> None:
    """Issue 21, case 5: the champion's ``niqe`` tag deleted or set to ``nan`` / ``abc`` by hand.
    It used to promote a worse challenger (deleted, ``nan``; then a JSON ValueError before
    ``registered.json``) or leave a version with no decision (``abc``, a traceback)."""
    from esrgan.evaluation import evaluate_folder
    from pipeline.registry.packaging import load_registered_generator

    c = client(env_uri)
    champion = aliases(env_uri)["champion"]
    if "truth" not in STATE:  # the champion's figures on this run's images, as the gate must find them
        STATE["truth"] = evaluate_folder(
            load_registered_generator(f"models:/{NAME}/{champion}"),
            project / "data/val",
            scale=4,
            metrics=("psnr_y", "niqe"),
            progress=False,
        )["model"]["mean"]
    truth = STATE["truth"]
    recorded = c.get_model_version(NAME, champion).tags["niqe"]
    if bad is None:
        c.delete_model_version_tag(NAME, champion, "niqe")
    else:
        c.set_model_version_tag(NAME, champion, "niqe", bad)
    try:
        worse, psnr = truth["niqe"] + 1.0, truth["psnr_y"]
        rec = register(
            project,
            f"run_bad_{bad}",
            niqe={0.0: worse + 0.5, 0.5: worse, 1.0: worse - 0.5},
            psnr={0.0: psnr, 0.5: psnr - 0.5, 1.0: 0.0},
            seed=5,
        )
    finally:
        c.set_model_version_tag(NAME, champion, "niqe", recorded)
    version = rec["version"]
    assert rec["decision"] == "kept-champion" and rec["champion_version"] == champion, rec["reason"]
    assert aliases(env_uri) == {"champion": champion, "challenger": version}
    assert "re-evaluated" in rec["comparison"]["compared_on"]
    assert rec["comparison"]["champion"]["niqe"] == pytest.approx(truth["niqe"], abs=1e-6)
    text = (project / f"outputs/run_bad_{bad}/registered.json").read_text()
    assert json.loads(text, parse_constant=lambda const: pytest.fail(f"{const} in registered.json")) == rec
    tags = c.get_model_version(NAME, version).tags
    assert tags["decision"] == "kept-champion" and tags["decision.champion_version"] == champion
    assert tags["decision.champion.niqe"] == f"{truth['niqe']:.4f}"
