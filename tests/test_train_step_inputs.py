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
from pipeline.errors import StageInputError
from pipeline.params import parse_params
from pipeline.steps.train import _fresh_or_resumable, _input_fingerprint, check_training_inputs

ROOT = Path(__file__).resolve().parents[1]


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
    run = run_dir_with_checkpoint(tmp_path)
    assert _fresh_or_resumable(run, {"a": 1}) is True  # no marker yet: unknown origin, discarded
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "iter_00000400.pth").write_bytes(b"weights")
    assert _fresh_or_resumable(run, {"a": 1}) is False
    assert (run / "checkpoints" / "iter_00000400.pth").read_bytes() == b"weights"


def test_changed_fingerprint_discards(tmp_path: Path) -> None:
    run = run_dir_with_checkpoint(tmp_path)
    _fresh_or_resumable(run, {"a": 1})
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "x.pth").write_bytes(b"old")
    assert _fresh_or_resumable(run, {"a": 2}) is True
    assert not (run / "checkpoints").exists()
    assert json.loads((run / "fingerprint.json").read_text())["inputs"] == {"a": 2}


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
    from pipeline.steps.train import pretrain_psnr_step

    run = run_dir_with_checkpoint(tmp_path)
    _fresh_or_resumable(run, {"previous": "config"})
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "iter_00000400.pth").write_bytes(b"weights")
    with pytest.raises(StageInputError):
        pretrain_psnr_step(ctx(), patches(tmp_path, scale=3), run, tmp_path / "psnr.pth", tmp_path / "m.json")  # type: ignore[arg-type]
    assert (run / "checkpoints" / "iter_00000400.pth").read_bytes() == b"weights"
    assert json.loads((run / "fingerprint.json").read_text())["inputs"] == {"previous": "config"}
