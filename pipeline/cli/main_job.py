"""``esrgan main``: the README's main job. Data if missing, ``dvc repro``, the registered version and
the gate's decision."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.data.workspace import sample
from pipeline.params import load_params
from pipeline.registry.tracking import check_reachable, default_tracking_uri


def _bin(name: str) -> str:
    """A console script of this environment (also when the venv is not activated)."""
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else (shutil.which(name) or name)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def ensure_data(root: Path, data_dir: Path) -> str:
    """Make the DVC-tracked HR dataset present: checkout from cache, pull, or rebuild the sample set."""
    if data_dir.is_dir() and any(data_dir.iterdir()):
        return "present"
    dvc_file = data_dir.with_name(data_dir.name + ".dvc")
    if dvc_file.is_file():
        for args in (["checkout", "-q", str(dvc_file)], ["pull", "-q", str(dvc_file)]):
            done = subprocess.run([_bin("dvc"), *args], cwd=root, env=_env(), capture_output=True, text=True)
            if done.returncode == 0 and data_dir.is_dir() and any(data_dir.iterdir()):
                return f"dvc {args[0]}"
    sample(data_dir)
    return "rebuilt the sample set"


def decision_lines(registered: dict[str, Any]) -> str:
    """What the register step decided: the new version, whether it became the champion, and why (from
    ``registered.json``)."""
    name, version, alpha = registered["model_name"], registered["version"], registered["alpha"]
    # registered.json written before the champion/challenger gate has no "decision".
    if registered.get("decision", "promoted") == "promoted":
        return (
            f"champion: {name} version {version} (alias @{registered['alias']}), alpha {alpha:g}\n"
            f"decision: promoted: {registered.get('reason', '')}"
        )
    return (
        f"challenger: {name} version {version} (alias @challenger), alpha {alpha:g}\n"
        f"decision: kept champion version {registered['champion_version']}: {registered['reason']}\n"
        f"promote anyway: esrgan registry promote {version}   (or set register.force_promote: true)"
    )


def _experiment_id(uri: str, name: str) -> str:
    """The id of experiment ``name`` on ``uri`` (for a deep link to its runs page)."""
    from mlflow.tracking import MlflowClient

    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else "0"


def run_main_job(root: Path, profile: str | None = None) -> int:
    """Run the whole pipeline with ``dvc repro`` and print the registered version and the gate's decision."""
    root = root.resolve()
    if profile is not None:
        # params.yaml is versioned: `git checkout params.yaml` returns to the demo profile.
        src = root / "configs" / f"params.{profile}.yaml"
        shutil.copyfile(src, root / "params.yaml")
        print(f"==> params.yaml now holds the {profile!r} profile ({src.relative_to(root)})")
    # Fail fast, before data or outputs are touched: the whole params.yaml, then the tracking server.
    params = load_params(root / "params.yaml")
    check_reachable(os.environ.get("MLFLOW_TRACKING_URI", ""))
    data_dir = root / params.data.path
    print(f"==> HR dataset: {ensure_data(root, data_dir)} ({data_dir.relative_to(root)})")
    start = time.perf_counter()
    print("==> dvc repro")
    done = subprocess.run([_bin("dvc"), "repro"], cwd=root, env=_env())
    if done.returncode != 0:
        print(f"esrgan: error: dvc repro failed with exit status {done.returncode}", file=sys.stderr)
        return done.returncode
    elapsed = time.perf_counter() - start
    registered = json.loads((root / "outputs" / "registered.json").read_text())
    uri = default_tracking_uri(root)
    runs_page = f"#/experiments/{_experiment_id(uri, params.tracking.experiment)}/runs"
    if uri.startswith(("http://", "https://")):
        compare = f"open {uri.rstrip('/')}/{runs_page}"
    else:
        compare = f".venv/bin/mlflow ui --backend-store-uri {uri}  (then open http://127.0.0.1:5000/{runs_page})"
    # MLflow 3's UI starts a fresh browser in its GenAI view whatever the experiment's kind tag says.
    compare += "\n               (a fresh browser may open the GenAI view: the runs are under 'Model training')"
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(registered["metrics"].items()))
    print(
        f"\n==> done in {elapsed / 60:.1f} min\n{decision_lines(registered)}\nmetrics on the validation split: {metrics}"
    )
    print(
        f"compare runs:  {compare}\n"
        f"serve it:      MLFLOW_TRACKING_URI={uri} .venv/bin/mlflow models serve "
        f"-m {registered['model_uri']} --env-manager local -p 5001\n"
        f"upscale:       MLFLOW_TRACKING_URI={uri} .venv/bin/esrgan upscale IMAGE -m {registered['model_uri']} -o out/\n"
        f"registry:      MLFLOW_TRACKING_URI={uri} .venv/bin/esrgan registry list   (promote VERSION, rollback)"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("main", help="the main job: sample data if missing, dvc repro, registration summary")
    p.add_argument(
        "--profile",
        choices=["paper"],
        default=None,
        help="copy configs/params.<profile>.yaml over params.yaml first (git checkout params.yaml undoes it)",
    )
    p.set_defaults(handler=_run_main)


def _run_main(args: argparse.Namespace) -> int:
    return run_main_job(Path.cwd(), profile=args.profile)
