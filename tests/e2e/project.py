"""Helpers for end-to-end tests: a scratch copy of the project with a tiny params.yaml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def tiny_params() -> dict[str, Any]:
    """The project's params.yaml shrunk to seconds of work (same schema, same stages)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["extract_patches"].update(crop_size=128, step=128, patch_limit=2, workers=1)
    params["model"].update(num_feat=8, num_block=1, num_grow=4)
    for stage, iters in (("pretrain_psnr", 6), ("finetune_gan", 2)):
        section = params[stage]
        section.update(iterations=iters, log_every=2, val_every=iters, checkpoint_every=iters)
        section["data"].update(batch_size=2, num_workers=0)
    params["pretrain_psnr"]["data"]["patch_size"] = 32
    params["finetune_gan"]["schedule"] = {"kind": "constant"}
    params["finetune_gan"]["discriminator"]["num_feat"] = 8
    params["finetune_gan"]["perceptual"] = {"backbone": "random", "layers": None, "allow_download": False}
    params["logging"].update(num_samples=1, progress_bar=False)
    params["interpolate"]["alphas"] = [0.0, 0.5, 1.0]
    params["evaluate"]["max_images"] = 1
    return params


#: Pipeline-parameter overrides for the KFP runs (kfp.local subprocesses and containers): NIQE and
#: LPIPS of three alphas on 2 cores are most of their time, so they score fidelity only, rank by a
#: metric that is computed (the champion gate compares by it) and fix the champion's alpha. The
#: perceptual selection is covered by the DVC end-to-end test.
FAST_KFP_OVERRIDES = (
    "evaluate.perceptual=false",
    "register.selection.rule=fixed",
    "register.selection.alpha=0.5",
    "register.selection.metric=psnr_y",
)


def make_project(dest: Path, params: dict[str, Any] | None = None) -> Path:
    """Copy the git-tracked project files into ``dest`` as a fresh git + DVC repository."""
    listing = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(listing, cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / "params.yaml").write_text(yaml.safe_dump(params or tiny_params(), sort_keys=False))
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
    ):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


# Ambient cloud settings a developer may have: tests must never reach a real account.
AMBIENT_CLOUD_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "MLFLOW_S3_ENDPOINT_URL",
)
# Missing on purpose: botocore and dvc-s3 skip a missing file (dvc-s3 fails on os.devnull).
NO_AWS_FILE = "/nonexistent/esrgan-tests/aws"


def env(**extra: str) -> dict[str, str]:
    """The test environment with this venv's scripts (esrgan, dvc, mlflow) first on PATH.

    No ambient tracking server or cloud credentials; ``~/.aws`` is not read.
    """
    out = {k: v for k, v in os.environ.items() if k not in AMBIENT_CLOUD_ENV}
    out["PATH"] = f"{VENV_BIN}{os.pathsep}{out.get('PATH', '')}"
    out.pop("MLFLOW_TRACKING_URI", None)
    out.update(AWS_CONFIG_FILE=NO_AWS_FILE, AWS_SHARED_CREDENTIALS_FILE=NO_AWS_FILE)
    out.update(extra)
    return out


def run(cmd: list[str], cwd: Path, timeout: float = 600, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env(**extra_env), capture_output=True, text=True, timeout=timeout)
