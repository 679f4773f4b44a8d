"""``_fresh_or_resumable`` empties a training run folder: the cases tests/pipeline/steps/test_training_inputs.py
does not cover (corrupt markers, folders esrgan did not create, what is never deleted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esrgan.owned_folders import MARKER, NotOwnedError
from pipeline.steps.training import _fresh_or_resumable


def run_with_marker(tmp_path: Path, marker: str | None) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "iter_00000400.pth").write_bytes(b"weights")
    if marker is not None:
        (run / "fingerprint.json").write_text(marker)
    return run


@pytest.mark.parametrize(
    "marker",
    ["{not json", "", "[]", '{"inputs": {"a": 1}}', '"a string"', "null", '{"sha256": 12}'],
    ids=["invalid-json", "empty", "a-list", "no-sha256", "a-string", "null", "wrong-type"],
)
def test_an_unreadable_marker_discards_the_folder(tmp_path: Path, marker: str) -> None:
    run = run_with_marker(tmp_path, marker)
    assert _fresh_or_resumable(run, {"a": 1}) is True
    assert sorted(p.name for p in run.iterdir()) == [MARKER, "fingerprint.json"]
    assert json.loads((run / "fingerprint.json").read_text())["inputs"] == {"a": 1}


def test_a_marker_folder_instead_of_a_file_is_not_proof_of_ownership(tmp_path: Path) -> None:
    run = run_with_marker(tmp_path, None)
    (run / "fingerprint.json").mkdir()
    with pytest.raises(NotOwnedError, match="holds files esrgan did not write"):
        _fresh_or_resumable(run, {"a": 1})
    assert (run / "checkpoints" / "iter_00000400.pth").read_bytes() == b"weights"


@pytest.mark.parametrize("folder", [".", "thesis"], ids=["the-working-folder", "a-user-folder"])
def test_a_folder_esrgan_did_not_create_is_refused_untouched(tmp_path: Path, folder: str) -> None:
    """The issue's reproduction: --run-dir pointing at a folder of someone else's files."""
    run = tmp_path / folder
    run.mkdir(exist_ok=True)
    (run / "thesis.txt").write_text("precious")
    (run / "sub").mkdir()
    (run / "sub" / "data.csv").write_text("1,2")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(NotOwnedError, match=rf"{run.name}: holds files esrgan did not write .*nothing was deleted"):
        _fresh_or_resumable(run, {"a": 1})
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert (run / "thesis.txt").read_text() == "precious"


def test_an_empty_folder_is_claimed_and_a_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _fresh_or_resumable(empty, {"a": 1}) is False
    assert (empty / MARKER).is_file()
    afile = tmp_path / "afile"
    afile.write_text("keep")
    with pytest.raises(NotOwnedError, match="not a folder esrgan created"):
        _fresh_or_resumable(afile, {"a": 1})
    assert afile.read_text() == "keep"


def test_an_owned_folder_is_emptied_but_keeps_its_marker(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _fresh_or_resumable(run, {"a": 1}) is False
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "iter_00000100.pth").write_bytes(b"old")
    marker = (run / MARKER).read_bytes()
    assert _fresh_or_resumable(run, {"a": 2}) is True
    assert sorted(p.name for p in run.iterdir()) == [MARKER, "fingerprint.json"]
    assert (run / MARKER).read_bytes() == marker  # fixed bytes: a DVC output holding it keeps its hash


def test_the_marker_records_a_digest_independent_of_key_order(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _fresh_or_resumable(run, {"a": 1, "b": [1, 2]}) is False
    (run / "keep.txt").write_text("resumable")
    assert _fresh_or_resumable(run, {"b": [1, 2], "a": 1}) is False  # same inputs, other order
    assert (run / "keep.txt").read_text() == "resumable"
    assert set(json.loads((run / "fingerprint.json").read_text())) == {"sha256", "inputs"}


def test_nothing_outside_the_run_folder_is_deleted(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.pth").write_bytes(b"keep")
    sibling = tmp_path / "run-other"
    sibling.mkdir()
    (sibling / "fingerprint.json").write_text("{}")
    run = run_with_marker(tmp_path, '{"sha256": "old"}')
    (run / "link").symlink_to(outside, target_is_directory=True)  # a link inside is removed, not followed

    assert _fresh_or_resumable(run, {"a": 1}) is True
    assert (outside / "precious.pth").read_bytes() == b"keep"
    assert (sibling / "fingerprint.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "run", "run-other"]


def test_a_symlinked_run_folder_is_refused_not_followed(tmp_path: Path) -> None:
    # A link is never owned: the target folder's files survive a changed fingerprint.
    target = run_with_marker(tmp_path, '{"sha256": "old"}')
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    with pytest.raises(NotOwnedError):
        _fresh_or_resumable(link, {"a": 1})
    assert (target / "checkpoints" / "iter_00000400.pth").read_bytes() == b"weights"


def test_a_fingerprint_with_paths_is_recorded_and_resumes(tmp_path: Path) -> None:
    """Values that are not plain JSON (a Path) are recorded as text; the same inputs then resume."""
    run = run_with_marker(tmp_path, '{"sha256": "old"}')
    fingerprint = {"init": tmp_path / "psnr.pth", "iterations": 3}
    assert _fresh_or_resumable(run, fingerprint) is True  # another configuration's marker: fresh
    assert json.loads((run / "fingerprint.json").read_text())["inputs"]["init"] == str(tmp_path / "psnr.pth")
    (run / "checkpoints").mkdir()
    assert _fresh_or_resumable(run, fingerprint) is False and (run / "checkpoints").is_dir()
