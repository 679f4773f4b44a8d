"""The training steps decide whether to resume or discard a run folder: unit tests for that
decision, and proof that bad inputs are refused before anything is deleted."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from esrgan.models import RRDBNet, save_generator
from esrgan.owned_folders import NotOwnedError
from pipeline.errors import StageInputError
from pipeline.params import parse_params
from pipeline.steps.training import _fresh_or_resumable, _input_fingerprint, check_training_inputs

ROOT = Path(__file__).resolve().parents[3]


def ctx(**model: int) -> SimpleNamespace:
    doc = yaml.safe_load((ROOT / "params.yaml").read_text())
    doc["model"].update(model)
    return SimpleNamespace(params=parse_params(doc))


def run_dir_with_checkpoint(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "iter_00000400.pth").write_bytes(b"weights")
    return run


def patches(tmp_path: Path, scale: int = 4) -> Path:
    root = tmp_path / "patches"
    for sub in ("train/hr", "train/lr", "val/hr", "val/lr"):
        (root / sub).mkdir(parents=True)
        (root / sub / "a.png").write_bytes(b"x")
    (root / "train" / "summary.json").write_text(json.dumps({"config": {"scale": scale}}))
    return root


def test_same_fingerprint_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _fresh_or_resumable(run, {"a": 1}) is False  # new folder: created and claimed
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "iter_00000400.pth").write_bytes(b"weights")
    assert _fresh_or_resumable(run, {"a": 1}) is False
    assert (run / "checkpoints" / "iter_00000400.pth").read_bytes() == b"weights"


def test_changed_fingerprint_discards(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fresh_or_resumable(run, {"a": 1})
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "x.pth").write_bytes(b"old")
    assert _fresh_or_resumable(run, {"a": 2}) is True
    assert not (run / "checkpoints").exists()
    assert json.loads((run / "fingerprint.json").read_text())["inputs"] == {"a": 2}


def test_checkpoints_in_a_folder_without_marker_are_not_ours_to_delete(tmp_path: Path) -> None:
    run = run_dir_with_checkpoint(tmp_path)
    with pytest.raises(NotOwnedError):
        _fresh_or_resumable(run, {"a": 1})
    assert (run / "checkpoints" / "iter_00000400.pth").read_bytes() == b"weights"


def test_a_missing_run_folder_is_created(tmp_path: Path) -> None:
    assert _fresh_or_resumable(tmp_path / "new", {"a": 1}) is False
    assert (tmp_path / "new" / "fingerprint.json").is_file()


def test_fingerprint_ignores_logging_and_the_other_stage(tmp_path: Path) -> None:
    p = patches(tmp_path)
    a = ctx()
    b = ctx()
    b.params.logging.progress_bar = not a.params.logging.progress_bar
    b.params.finetune_gan.iterations = a.params.finetune_gan.iterations + 1
    assert _input_fingerprint(a, "pretrain_psnr", p, None) == _input_fingerprint(b, "pretrain_psnr", p, None)  # type: ignore[arg-type]
    b.params.pretrain_psnr.iterations += 1
    assert _input_fingerprint(a, "pretrain_psnr", p, None) != _input_fingerprint(b, "pretrain_psnr", p, None)  # type: ignore[arg-type]


def test_patches_of_another_scale_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StageInputError, match=r"patches were cut for scale 3 but model\.scale is 4"):
        check_training_inputs(ctx(), patches(tmp_path, scale=3), None)  # type: ignore[arg-type]
    check_training_inputs(ctx(), patches(tmp_path / "ok"), None)  # type: ignore[arg-type]


def test_missing_patches_list_every_folder(tmp_path: Path) -> None:
    with pytest.raises(StageInputError) as info:
        check_training_inputs(ctx(), tmp_path / "nowhere", None)  # type: ignore[arg-type]
    assert len(info.value.problems) == 4


def test_an_init_generator_of_another_architecture_is_refused(tmp_path: Path) -> None:
    warnings.filterwarnings("ignore", message=".*num_grow.*")
    torch.manual_seed(0)
    init = save_generator(RRDBNet(num_feat=8, num_block=1, num_grow=4), tmp_path / "psnr.pth")
    with pytest.raises(StageInputError, match=r"psnr.pth: generator does not match params.yaml's model \(num_feat 8"):
        check_training_inputs(ctx(), patches(tmp_path), init)  # type: ignore[arg-type]
    check_training_inputs(ctx(num_feat=8, num_block=1, num_grow=4), patches(tmp_path / "ok"), init)  # type: ignore[arg-type]


def test_a_refused_stage_keeps_the_previous_checkpoints(tmp_path: Path) -> None:
    from pipeline.steps.pretrain_psnr import pretrain_psnr_step

    run = tmp_path / "run"
    _fresh_or_resumable(run, {"previous": "config"})
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "iter_00000400.pth").write_bytes(b"weights")
    with pytest.raises(StageInputError):
        pretrain_psnr_step(ctx(), patches(tmp_path, scale=3), run, tmp_path / "psnr.pth", tmp_path / "m.json")  # type: ignore[arg-type]
    assert (run / "checkpoints" / "iter_00000400.pth").read_bytes() == b"weights"
    assert json.loads((run / "fingerprint.json").read_text())["inputs"] == {"previous": "config"}


# --- the reproductions, through the command line -----------------------------------------


def _stage(tmp_path: Path, params: dict[str, object], run: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    import os

    from pipeline.cli import main

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:
        outputs = ["--model-out", str(tmp_path / "m.pth"), "--metrics", str(tmp_path / "m.json")]
        code = main(["stage", "pretrain_psnr", "--patches", str(patches(tmp_path)), "--run-dir", str(run), *outputs])
    finally:
        os.chdir(cwd)
        del os.environ["MLFLOW_TRACKING_URI"]
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # MLflow logs its database set-up at INFO; the errors are the lines esrgan prints.
    return code, "\n".join(line for line in err.splitlines() if line.startswith("esrgan:"))


def test_stage_refuses_a_run_folder_of_someone_elses_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "v"
    run.mkdir()
    (run / "thesis.txt").write_text("precious")
    code, err = _stage(tmp_path, yaml.safe_load((ROOT / "params.yaml").read_text()), run, capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        f"esrgan: error: {run}: holds files esrgan did not write (no .esrgan-owned marker); "
        "give a new or empty run folder (--run-dir), nothing was deleted"
    ]
    assert (run / "thesis.txt").read_text() == "precious"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"runtime": {"device": "cuda"}}, "runtime.device: cuda: CUDA is not available on this machine"),
        ({"model": {"num_feat": 1e32}}, "model.num_feat: "),
        ({"pretrain_psnr": {"data": {"batch_size": 1e11}}}, "pretrain_psnr.data.batch_size: Input should be less"),
        ({"runtime": {"seed": 1e23}}, "runtime.seed: "),
        ({"runtime": {"seed": 2**40}}, "runtime.seed: Input should be less than or equal to 4294967295"),
    ],
    ids=["cuda-on-cpu", "num_feat-1e32", "batch-1e11", "seed-1e23", "seed-2**40"],
)
def test_a_refused_run_keeps_the_previous_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, dict[str, object]], message: str
) -> None:
    """Device and absurd values are refused before the run folder of another configuration is reset."""
    import torch.cuda

    if change.get("runtime", {}).get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run = tmp_path / "runs" / "psnr"
    _fresh_or_resumable(run, {"previous": "config"})
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "iter_00000400.pth").write_bytes(b"weights")
    doc = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in change.items():
        for key, value in values.items():
            if isinstance(value, dict):
                doc[section][key].update(value)
            else:
                doc[section][key] = value
    code, err = _stage(tmp_path, doc, run, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("esrgan: error: ") and message in lines[0], lines
    assert (run / "checkpoints" / "iter_00000400.pth").read_bytes() == b"weights"


def test_a_run_folder_that_holds_the_patches_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StageInputError, match="the run folder overlaps the patches folder"):
        check_training_inputs(ctx(), patches(tmp_path), None, run_dir=tmp_path)  # type: ignore[arg-type]


def test_a_missing_perceptual_backbone_is_refused_before_the_gan_stage(tmp_path: Path) -> None:
    c = ctx()
    c.params.finetune_gan.perceptual.backbone = str(tmp_path / "no-such-vgg.pth")
    with pytest.raises(StageInputError, match=r"finetune_gan\.perceptual: perceptual backbone .* nor an existing file"):
        check_training_inputs(c, patches(tmp_path), None, stage="gan")  # type: ignore[arg-type]
