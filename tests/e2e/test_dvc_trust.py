"""End to end on a tiny project: after the main job, git and DVC are clean; logging-only changes
and forced re-runs invalidate nothing; code changes invalidate their stages; bad parameters are
refused with one line each and lose nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.e2e.project import make_project, run, tiny_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    params = tiny_params()  # and lighter still: two alphas, fidelity metrics only (fewer, faster processes)
    params["interpolate"]["alphas"] = [0.0, 1.0]
    params["evaluate"]["perceptual"] = False
    params["register"]["selection"]["metric"] = "psnr_y"
    root = make_project(tmp_path_factory.mktemp("trust"), params)
    done = run(["esrgan", "main"], root, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root


def to_run(root: Path) -> dict:
    """What ``dvc status`` says would run, less resolve_init's standing "always changed" (it checks
    the init sources on every repro and rewrites equal bytes, which re-runs nothing after it)."""
    done = run(["dvc", "status", "--json"], root)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout or "{}")
    if status.get("resolve_init") == ["always changed"]:
        del status["resolve_init"]
    return status


def edit_params(root: Path, **changes: object) -> None:
    doc = yaml.safe_load((root / "params.yaml").read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = doc
        for part in parents:
            node = node[part]
        node[leaf] = value
    (root / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def test_git_and_dvc_are_clean_after_the_main_job(project: Path) -> None:
    # The one change is the run's record, which the README says to commit (DVC's convention).
    assert run(["git", "status", "--porcelain"], project).stdout.splitlines() == ["?? dvc.lock"]
    run(["git", "add", "dvc.lock"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"], project)
    assert run(["git", "status", "--porcelain"], project).stdout == ""
    assert to_run(project) == {}


def test_logging_only_changes_rerun_nothing(project: Path) -> None:
    original = (project / "params.yaml").read_text()
    edit_params(
        project,
        logging__progress_bar=True,
        logging__num_samples=0,
        extract_patches__workers=2,
        tracking__experiment="elsewhere",
    )
    try:
        assert to_run(project) == {}
    finally:
        (project / "params.yaml").write_text(original)


def test_a_forced_rerun_with_equal_weights_invalidates_nothing_after_it(project: Path) -> None:
    before = (project / "outputs" / "interpolated" / "alpha_1.0.pth").read_bytes()
    done = run(["dvc", "repro", "-f", "-s", "interpolate@1.0"], project)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (project / "outputs" / "interpolated" / "alpha_1.0.pth").read_bytes() == before
    assert to_run(project) == {}


@pytest.mark.parametrize(
    ("module", "stages"),
    [
        ("esrgan/data/imresize.py", {"extract_patches", "pretrain_psnr", "evaluate@1.0", "register"}),
        ("esrgan/models/interpolation.py", {"interpolate@1.0"}),
        ("pipeline/steps/training.py", {"pretrain_psnr", "finetune_gan"}),
        ("pipeline/steps/register.py", {"register"}),
    ],
)
def test_code_changes_invalidate_the_stages_that_run_it(project: Path, module: str, stages: set[str]) -> None:
    path = project / module
    original = path.read_text()
    path.write_text(original + "\n# changed\n")
    try:
        changed = set(to_run(project))
    finally:
        path.write_text(original)
    assert stages <= changed, changed
    if module.startswith("pipeline/steps/train"):
        assert "extract_patches" not in changed and "register" not in changed


def test_bad_parameters_are_refused_and_nothing_is_lost(project: Path) -> None:
    original = (project / "params.yaml").read_text()
    registered = (project / "outputs" / "registered.json").read_bytes()
    checkpoints = sorted((project / "outputs" / "runs" / "psnr").rglob("*"))
    edit_params(project, extract_patches__scale=2, register__selection__rule="fixed", register__selection__alpha=0.3)
    try:
        done = run(["dvc", "repro"], project)
        main = run(["esrgan", "main"], project)
    finally:
        (project / "params.yaml").write_text(original)
    assert done.returncode != 0
    for out in (done.stderr + done.stdout, main.stderr):
        assert "extract_patches.scale (2) differs from model.scale (4)" in out
        assert "register.selection.alpha (0.3) is not among interpolate.alphas" in out
        assert "Traceback" not in out
    assert main.returncode == 2
    assert main.stderr.count("esrgan: error:") == 2
    assert (project / "outputs" / "registered.json").read_bytes() == registered
    assert sorted((project / "outputs" / "runs" / "psnr").rglob("*")) == checkpoints
