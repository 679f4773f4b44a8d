"""The core library ``esrgan/`` stands alone: it never imports the MLOps layers (MLflow, DVC,
Kubeflow Pipelines, S3 clients) nor the project's own ``pipeline``/``components`` packages.
Checked statically (every import statement, functions included) and by importing every module."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "esrgan"
FORBIDDEN = ("mlflow", "dvc", "kfp", "boto3", "botocore", "pipeline", "components")


def forbidden_imports(path: Path) -> list[str]:
    """``file:line: module`` for each import of a forbidden top-level package in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path.relative_to(REPO)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    return found


def test_no_core_module_imports_an_mlops_layer_statically() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 10
    assert [hit for f in files for hit in forbidden_imports(f)] == []


def test_importing_every_core_module_loads_no_mlops_layer() -> None:
    script = (
        "import importlib, json, pkgutil, sys, esrgan\n"
        "mods = [m.name for m in pkgutil.walk_packages(esrgan.__path__, 'esrgan.')]\n"
        "for m in mods: importlib.import_module(m)\n"
        f"print(json.dumps([len(mods), sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r})]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    count, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert count > 10
    assert loaded == []
