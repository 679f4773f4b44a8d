"""``dvc.yaml`` is each stage's contract: it must list all the code the stage runs and exactly the
parameters that change its outputs. The code is derived here from the import graph, so a new
import (or a new module) that ``dvc.yaml`` does not cover fails this test, not a user's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.import_graph import imported_modules

REPO = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("esrgan", "pipeline")

#: What each stage's ``esrgan stage`` command runs: this step module (and everything it imports).
STAGE_ROOTS = {
    "resolve_init": "pipeline.steps.resolve_init",
    "extract_patches": "pipeline.steps.extract_patches",
    "pretrain_psnr": "pipeline.steps.pretrain_psnr",
    "finetune_gan": "pipeline.steps.finetune_gan",
    "interpolate": "pipeline.steps.interpolate",
    "evaluate_bicubic": "pipeline.steps.evaluate_bicubic",
    "evaluate": "pipeline.steps.evaluate",
    "register": "pipeline.steps.register",
}
#: Adapters every stage passes through; they parse arguments and contain no logic (DESIGN.md), so a
#: change to them (say a new ``upscale`` option) must not re-train anything.
ADAPTERS = {"pipeline/cli/__init__.py", "pipeline/cli/app.py", "pipeline/cli/common.py", "pipeline/cli/stage.py"}
#: params.yaml keys no stage tracks, and why none of them changes an output file.
UNTRACKED_PARAMS = {
    "data.path": "interpolated into the commands (DVC tracks it there)",
    "extract_patches.workers": "parallelism only; patches are sorted and identical for any count",
    "logging.keep_checkpoints": "how many resumable checkpoints stay in the untracked run folder",
    "logging.num_samples": "sample strips in the untracked run folder and MLflow",
    "logging.sample_crop": "sample strips in the untracked run folder and MLflow",
    "logging.progress_bar": "console output",
    "tracking.experiment": "where MLflow runs go, not what files hold",
}


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def code_closure(root_module: str) -> set[str]:
    """Project files (repo-relative) executed by importing ``root_module``: Python runs each parent
    package's ``__init__`` and every import it reaches, including imports inside functions."""
    seen: dict[str, Path] = {}
    todo = [root_module]
    while todo:
        parts = todo.pop().split(".")
        if parts[0] not in PROJECT_PACKAGES:
            continue
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            path = _module_file(name)
            if path is not None and name not in seen:
                seen[name] = path
                todo.extend(imported_modules(path, name))
    return {str(p.relative_to(REPO)) for p in seen.values()}


def _stages() -> dict[str, dict[str, Any]]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def test_every_stage_has_a_root_module_and_calls_it() -> None:
    assert set(_stages()) == set(STAGE_ROOTS)
    commands = (REPO / "pipeline" / "cli" / "stage.py").read_text()
    for root in set(STAGE_ROOTS.values()):
        assert f"from {root} import" in commands, root


def test_the_closure_follows_imports() -> None:
    closure = code_closure("pipeline.steps.interpolate")
    # interpolate.py -> esrgan.models (its package __init__ imports its members) -> esrgan/__init__.py...
    assert {
        "pipeline/steps/interpolate.py",
        "esrgan/models/interpolation.py",
        "esrgan/models/checkpoints.py",
        "esrgan/__init__.py",
    } <= closure
    assert "pipeline/steps/register.py" not in closure  # the steps package loads its members lazily


@pytest.mark.parametrize("stage", sorted(STAGE_ROOTS))
def test_dvc_yaml_lists_all_the_code_a_stage_runs(stage: str) -> None:
    deps = [str(d) for d in _stages()[stage]["deps"]]
    missing = sorted(f for f in code_closure(STAGE_ROOTS[stage]) - ADAPTERS if not _covered(f, deps))
    assert not missing, f"dvc.yaml stage {stage!r} runs these files but does not depend on them: {missing}"


@pytest.mark.parametrize("stage", sorted(STAGE_ROOTS))
def test_code_deps_exist(stage: str) -> None:
    for dep in _stages()[stage]["deps"]:
        if dep.startswith(("esrgan", "pipeline")):
            assert (REPO / dep).exists(), f"{stage}: {dep} does not exist"


def _leaves(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, dict):
        return [leaf for k, v in data.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def test_every_parameter_is_tracked_by_a_stage_or_explained() -> None:
    tracked = [str(p) for stage in _stages().values() for p in stage.get("params", [])]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    unexplained = [
        leaf
        for leaf in _leaves(params)
        if leaf not in UNTRACKED_PARAMS and not any(leaf == t or leaf.startswith(t + ".") for t in tracked)
    ]
    assert not unexplained, f"params.yaml keys no stage depends on (add them to dvc.yaml or explain): {unexplained}"
    for key in UNTRACKED_PARAMS:
        assert not any(key == t or key.startswith(t + ".") for t in tracked), f"{key} is tracked after all"


def test_logging_only_changes_rerun_no_training() -> None:
    for stage in ("pretrain_psnr", "finetune_gan"):
        params = [str(p) for p in _stages()[stage]["params"]]
        assert "logging" not in params and "logging.progress_bar" not in params
