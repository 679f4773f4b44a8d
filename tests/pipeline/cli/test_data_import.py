"""``esrgan data import`` with bad input (issue 21, case 12): one line per problem, exit status 2,
nothing written, the current dataset untouched. In-process (``pipeline.cli.main``), without DVC."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from esrgan.data import import_dataset
from esrgan.data.sample import MAX_LISTED_PROBLEMS, UnreadableImagesError
from pipeline.cli import main


def images(folder: Path, count: int = 4, size: int = 48) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, list[str], str]:
    code = main(["data", "import", *map(str, args), "--no-dvc"])
    captured = capsys.readouterr()
    return code, captured.err.splitlines(), captured.out


@pytest.fixture
def current(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A workspace whose ``data`` already holds an imported dataset."""
    out = tmp_path / "ws" / "data"
    code, errors, _ = run(capsys, images(tmp_path / "good", 5), "--out", out)
    assert (code, errors) == (0, [])
    return out


@pytest.mark.parametrize("fraction", ["1.5", "1", "0", "-0.1", "nan", "inf", "1e308"])
def test_val_fraction_outside_zero_one_is_one_line_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fraction: str
) -> None:
    src = images(tmp_path / "src")
    out = tmp_path / "new" / "deeper" / "data"
    code, errors, _ = run(capsys, src, "--out", out, "--val-fraction", fraction)
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith("esrgan: error: --val-fraction ") and "between 0 and 1" in errors[0]
    assert not (tmp_path / "new").exists()


def test_a_fraction_that_leaves_nothing_to_train_on_is_refused(tmp_path: Path, capsys) -> None:
    code, errors, _ = run(capsys, images(tmp_path / "src", 3), "--out", tmp_path / "data", "--val-fraction", "0.9")
    assert code == 2 and errors == [
        "esrgan: error: val_fraction 0.9 puts all 3 images in val/ and none in train/; use a smaller one"
    ]
    assert not (tmp_path / "data").exists()


def bad_files(src: Path) -> dict[str, str]:
    """Write broken images into ``src``; their names and the reason each must be reported with."""
    png = (src / "img0.png").read_bytes()
    (src / "zero.png").write_bytes(b"")
    (src / "cut.png").write_bytes(png[: len(png) // 2])  # header intact, pixels cut off
    (src / "header.png").write_bytes(png[:30])
    (src / "text.jpg").write_text("not a jpeg")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(src / "whole.jpg", quality=90)
    jpg = (src / "whole.jpg").read_bytes()
    (src / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    (src / "whole.jpg").unlink()
    return {
        "zero.png": "empty file",
        "cut.png": "corrupt or truncated",
        "header.png": "",
        "text.jpg": "not an image",
        "cut.jpg": "corrupt or truncated",
    }


def test_unreadable_images_refuse_the_import_one_line_each_and_keep_the_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], current: Path
) -> None:
    src = images(tmp_path / "src", 3)
    expected = bad_files(src)
    before = tree(current.parent)
    for force in ([], ["--force"]):
        code, errors, out = run(capsys, src, "--out", current, *force)
        assert code == 2 and out == ""
        assert all(line.startswith("esrgan: error: ") for line in errors)
        assert len(errors) == len(expected) + 1 and "nothing imported" in errors[-1]
        for name, reason in expected.items():
            [line] = [e for e in errors if f"{src / name}:" in e]
            assert reason in line
        assert tree(current.parent) == before  # no aside folder, no temporary folder, same bytes
        assert sorted(p.name for p in current.parent.iterdir()) == ["data"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_a_file_without_read_permission_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = images(tmp_path / "src", 3)
    (src / "img1.png").chmod(0)
    try:
        code, errors, _ = run(capsys, src, "--out", tmp_path / "data")
    finally:
        (src / "img1.png").chmod(0o644)
    assert code == 2 and any(f"{src / 'img1.png'}: cannot read (Permission denied)" in e for e in errors)
    assert not (tmp_path / "data").exists()


def test_many_unreadable_images_are_listed_up_to_a_limit(tmp_path: Path) -> None:
    src = images(tmp_path / "src", 2)
    for i in range(MAX_LISTED_PROBLEMS + 5):
        (src / f"empty{i:02d}.png").write_bytes(b"")
    with pytest.raises(UnreadableImagesError) as err:
        import_dataset(src, tmp_path / "out")
    assert len(err.value.problems) == MAX_LISTED_PROBLEMS + 1
    assert err.value.problems[-1] == f"... and 5 more unreadable images in {src}"
    assert not (tmp_path / "out").exists()


def test_a_good_import_still_records_sizes(tmp_path: Path) -> None:
    manifest = import_dataset(images(tmp_path / "src", 4, size=40), tmp_path / "out", val_fraction=0.25)
    assert [(e["width"], e["height"]) for e in manifest["images"]] == [(40, 40)] * 4
    assert sorted(e["split"] for e in manifest["images"]) == ["train", "train", "train", "val"]


def test_an_unreadable_file_is_named_even_as_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    from esrgan import imageio

    src = images(tmp_path / "src", 3)
    locked = src / "img1.png"

    def fake_open(file, *args, **kwargs):  # what a chmod 000 file does to a non-root user
        if Path(file) == locked:
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(imageio, "open", fake_open, raising=False)
    code, errors, _ = run(capsys, src, "--out", tmp_path / "data")
    assert code == 2 and errors[0] == f"esrgan: error: {locked}: cannot read (Permission denied)"
    assert not (tmp_path / "data").exists()
