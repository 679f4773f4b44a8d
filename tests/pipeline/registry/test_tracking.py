"""Tracking failures fail fast and leave no run RUNNING: an unreachable server is refused in
seconds with one line, a stage's run ends FAILED or KILLED, and dead or superseded runs are
closed by the next attempt. Against MLflow's real SQLite store, and a real ``mlflow server``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from pipeline.errors import EXIT_USER_ERROR, TrackingUnavailable
from pipeline.registry.tracking import PARENT_RUN_ENV, TAG_KEY, Tracking, configure, parent_run_id, stage_run

ROOT = Path(__file__).resolve().parents[3]
UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite store for the module (creating one runs MLflow's migrations: seconds each)."""
    return tmp_path_factory.mktemp("store")


@pytest.fixture
def tracking(store: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tracking]:
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_DEFAULT_ARTIFACT_ROOT", (store / "mlruns").as_uri())
    yield configure(store, request.node.name)  # one experiment per test
    while mlflow.active_run():
        mlflow.end_run()


def status(run_id: str) -> str:
    return MlflowClient().get_run(run_id).info.status


def test_an_unreachable_server_is_refused_in_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", UNREACHABLE)
    start = time.monotonic()
    with pytest.raises(TrackingUnavailable) as info:
        configure(tmp_path, "exp")
    assert time.monotonic() - start < 30  # MLflow's own retries took ~250 s
    (line,) = info.value.problems
    assert line.startswith(f"MLflow tracking server {UNREACHABLE} is unreachable (")


def test_the_stage_command_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pipeline.cli import main; sys.exit(main())",
            "stage",
            "extract_patches",
            "--data",
            "data",
            "--out",
            "out",
            "--metrics",
            "m.json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": UNREACHABLE},
    )
    assert done.returncode == EXIT_USER_ERROR
    assert done.stderr.strip().splitlines() == [
        f"esrgan: error: MLflow tracking server {UNREACHABLE} is unreachable ("
        + done.stderr.split("unreachable (", 1)[1].strip()
    ]
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_a_failing_stage_ends_failed_and_an_interrupted_one_killed(tracking: Tracking) -> None:
    ids = []
    for exc, expected in ((RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")):
        with pytest.raises(type(exc)), stage_run(tracking, "s", {"a": 1}, run_name=f"s-{expected}") as run:
            ids.append(run.info.run_id)
            raise exc
        assert status(ids[-1]) == expected
    with stage_run(tracking, "s", {"a": 1}) as run:
        pass
    assert status(run.info.run_id) == "FINISHED"


def test_a_dead_attempt_of_the_same_stage_is_closed(tracking: Tracking) -> None:
    parent = parent_run_id(tracking)
    dead = MlflowClient().create_run(
        tracking.experiment_id, run_name="evaluate alpha=0.5", tags={"mlflow.parentRunId": parent}
    )
    other = MlflowClient().create_run(
        tracking.experiment_id, run_name="evaluate alpha=1", tags={"mlflow.parentRunId": parent}
    )
    with stage_run(tracking, "evaluate", {}, run_name="evaluate alpha=0.5") as run:
        assert run.info.run_id != dead.info.run_id
    assert status(dead.info.run_id) == "KILLED"
    assert status(other.info.run_id) == "RUNNING"  # a concurrent alpha (KFP) is not touched


def test_a_rerun_reuses_its_parent_and_closes_superseded_ones(tracking: Tracking) -> None:
    first = parent_run_id(tracking)
    assert parent_run_id(tracking) == first  # same code, data and params: the same execution
    client = MlflowClient()
    child = client.create_run(tracking.experiment_id, run_name="pretrain_psnr", tags={"mlflow.parentRunId": first})
    kfp = client.create_run(tracking.experiment_id, tags={TAG_KEY: "k", "esrgan.launcher": "kubeflow"})
    client.set_tag(first, TAG_KEY, "an older key")  # as if params.yaml had changed since
    second = parent_run_id(tracking)
    assert second != first
    assert status(first) == "KILLED" and status(child.info.run_id) == "KILLED"
    assert status(kfp.info.run_id) == "RUNNING"
    assert "superseded" in client.get_run(first).data.tags["esrgan.closed_because"]


@pytest.mark.slow
def test_sigterm_marks_the_run_killed_on_a_real_server(tmp_path: Path) -> None:
    from tests.e2e.servers import mlflow_server

    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from pipeline.registry.tracking import configure, stage_run
        tracking = configure(Path(sys.argv[1]), "exp")
        with stage_run(tracking, "pretrain_psnr", {"a": 1}) as run:
            print(run.info.run_id, flush=True)
            time.sleep(120)
        """
    )
    with mlflow_server(tmp_path / "server") as url:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": url}
        env.pop(PARENT_RUN_ENV, None)
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert proc.returncode != 0
        assert MlflowClient(tracking_uri=url).get_run(run_id).info.status == "KILLED"
