"""The core library ``esrgan/`` stands alone: it never imports the MLOps layers (MLflow, DVC,
Kubeflow Pipelines, S3 clients) nor the project's own ``pipeline``/``components`` packages.
Checked statically (every import statement, functions included) and by importing every module."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.import_graph import imported_modules

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


# --- the pipeline package: one tool, one folder, imports in one direction -----------------------

#: The folders of ``pipeline/`` (and the top-level ``components`` re-exports), each one tool.
TOOL_FOLDERS = ("pipeline.cli", "pipeline.kfp", "pipeline.registry", "pipeline.data", "pipeline.steps")


def _runtime_imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Project modules ``path`` imports when it runs, less its own parent packages (a package's
    ``__init__`` importing its children is not a cycle)."""
    return {n for n in imported_modules(path, module) if n in known and n != module and not module.startswith(n + ".")}


def _pipeline_graph() -> dict[str, set[str]]:
    files = {}
    for path in [*(REPO / "pipeline").rglob("*.py"), *(REPO / "components").rglob("*.py")]:
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    known = set(files)
    return {m: _runtime_imports(p, m, known) for m, p in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``[]``."""
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str]:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*stack, nxt])):
                return found
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return []


def _folder(module: str) -> str:
    return next((f for f in TOOL_FOLDERS if module == f or module.startswith(f + ".")), module)


def test_no_pipeline_module_imports_in_a_circle() -> None:
    graph = _pipeline_graph()
    assert len(graph) > 40
    assert _cycle(graph) == []


def test_tool_folders_import_each_other_in_one_direction() -> None:
    folders: dict[str, set[str]] = {}
    for module, targets in _pipeline_graph().items():
        folders.setdefault(_folder(module), set()).update(t for t in map(_folder, targets) if t != _folder(module))
    assert _cycle(folders) == [], "two tool folders import each other"
    # The steps are the layer the adapters call: they never import an adapter.
    assert not folders["pipeline.steps"] & {"pipeline.cli", "pipeline.kfp", "components"}
    assert not folders["pipeline.registry"] & {"pipeline.cli", "pipeline.kfp", "pipeline.steps"}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []
