"""The register step owns the sweep's file names under DVC: ``alpha_<a>.pth`` / ``alpha_<a>.json``
of the current ``interpolate.alphas``. After ``interpolate.alphas`` changes, the files of alphas
no longer swept are pruned, but only from folders esrgan created; everything else is kept."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from esrgan.owned_folders import MARKER, claim
from pipeline.params import InterpolateParams
from pipeline.steps.register import prune_stale_alphas, sweep_files


def sweep_folder(folder: Path, names: list[str], owned: bool) -> Path:
    if owned:
        claim(folder, "test folder")
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(name.encode())
    return folder


def test_stale_alpha_files_are_removed_from_an_owned_folder(tmp_path: Path) -> None:
    names = ["alpha_0.0.pth", "alpha_0.4.pth", "alpha_0.5.pth", "alpha_0.9.pth", "alpha_1.0.pth"]
    folder = sweep_folder(tmp_path / "interpolated", [*names, "alpha_0.4.json", "notes.txt", "alpha_x.pth"], owned=True)
    removed = prune_stale_alphas(folder, [0.0, 0.5, 1.0], ".pth")
    assert sorted(p.name for p in removed) == ["alpha_0.4.pth", "alpha_0.9.pth"]
    assert sorted(p.name for p in folder.iterdir()) == [
        MARKER,
        "alpha_0.0.pth",
        "alpha_0.4.json",
        "alpha_0.5.pth",
        "alpha_1.0.pth",
        "alpha_x.pth",
        "notes.txt",
    ]


def test_a_folder_without_the_marker_is_left_alone_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = sweep_folder(tmp_path / "mine", ["alpha_0.0.json", "alpha_0.3.json", "alpha_1.0.json"], owned=False)
    with caplog.at_level(logging.WARNING):
        assert prune_stale_alphas(folder, [0.0, 1.0], ".json") == []
    assert (folder / "alpha_0.3.json").read_bytes() == b"alpha_0.3.json"
    assert "alpha_0.3.json not in interpolate.alphas; kept" in caplog.text


def test_links_and_folders_named_like_alphas_are_not_deleted(tmp_path: Path) -> None:
    outside = tmp_path / "outside.pth"
    outside.write_bytes(b"keep")
    folder = sweep_folder(tmp_path / "interpolated", ["alpha_0.0.pth"], owned=True)
    (folder / "alpha_0.2.pth").symlink_to(outside)
    (folder / "alpha_0.3.pth").mkdir()
    assert prune_stale_alphas(folder, [0.0, 1.0], ".pth") == []
    assert outside.read_bytes() == b"keep" and (folder / "alpha_0.3.pth").is_dir()


def test_a_missing_folder_prunes_nothing(tmp_path: Path) -> None:
    assert prune_stale_alphas(tmp_path / "none", [0.0, 1.0], ".pth") == []


def test_sweep_files_name_the_current_alphas_as_dvc_yaml_does(tmp_path: Path) -> None:
    models = sweep_folder(tmp_path / "interpolated", ["alpha_0.0.pth", "alpha_0.3.pth", "alpha_1.0.pth"], owned=True)
    reports = sweep_folder(tmp_path / "evaluation", ["alpha_0.0.json", "alpha_0.3.json"], owned=True)
    ctx = SimpleNamespace(params=SimpleNamespace(interpolate=InterpolateParams(alphas=[0.0, 0.25, 1.0])))
    report_files, model_files = sweep_files(ctx, reports, models)
    # dvc.yaml's ${item}: Python's shortest form of each alpha.
    assert [p.name for p in report_files] == ["alpha_0.0.json", "alpha_0.25.json", "alpha_1.0.json"]
    assert {a: p.name for a, p in model_files.items()} == {
        0.0: "alpha_0.0.pth",
        0.25: "alpha_0.25.pth",
        1.0: "alpha_1.0.pth",
    }
    assert all(p.parent == reports for p in report_files) and all(p.parent == models for p in model_files.values())
    # The alpha no longer swept is pruned from both folders before the step reads them.
    assert not (models / "alpha_0.3.pth").exists() and not (reports / "alpha_0.3.json").exists()
