"""Sample HR dataset (deterministic, licensed, pinned), folder import and the DIV2K downloader."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from esrgan.data import (
    HOLDOUT_SOURCES,
    SAMPLE_SOURCES,
    DownloadError,
    SampleSourceError,
    build_holdout_set,
    build_sample_dataset,
    div2k,
    import_dataset,
    sample,
)
from esrgan.data.layout import sha256_file


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    build_sample_dataset(out)
    return out


def test_sample_build_is_byte_for_byte_deterministic(sample_dir: Path, tmp_path: Path) -> None:
    manifest = build_sample_dataset(tmp_path)
    assert _tree(tmp_path) == _tree(sample_dir)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary files left behind


def test_sample_layout_split_and_manifest(sample_dir: Path) -> None:
    manifest = json.loads((sample_dir / "manifest.json").read_text())
    splits = json.loads((sample_dir / "splits.json").read_text())
    assert splits == {
        "train": ["astronaut.png", "chelsea.png", "china.png", "grace_hopper.png", "motorcycle_left.png", "rocket.png"],
        "val": ["coffee.png", "flower.png"],
    }
    for split, names in splits.items():
        assert sorted(p.name for p in (sample_dir / split).iterdir()) == names
    assert len(manifest["images"]) == 8
    for entry in manifest["images"]:
        path = sample_dir / entry["split"] / entry["name"]
        assert sha256_file(path) == entry["sha256"]
        assert entry["licence"] and entry["attribution"]
        assert entry["source"]["package"] in {"scikit-image", "scikit-learn", "matplotlib"}
        assert entry["source"]["version"][0].isdigit()
        assert len(entry["source"]["sha256"]) == 64
        with Image.open(path) as img:
            assert img.mode == "RGB" and img.size == (entry["width"], entry["height"])
    licences = {e["name"]: e["licence"] for e in manifest["images"]}
    assert licences["chelsea.png"] == "CC0" and licences["china.png"].startswith("CC BY 2.0")
    assert "Public domain" in licences["grace_hopper.png"]
    sources_md = (sample_dir / "SOURCES.md").read_text()
    assert all(e["name"] in sources_md and e["licence"] in sources_md for e in manifest["images"])


def test_sample_pngs_hold_only_pixels(sample_dir: Path) -> None:
    data = (sample_dir / "train" / "astronaut.png").read_bytes()
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append(data[pos + 4 : pos + 8].decode())
        pos += 12 + length
    assert set(chunks) == {"IHDR", "IDAT", "IEND"}  # no tIME, tEXt, iCCP: nothing that varies


def test_sample_pixels_equal_the_decoded_source(sample_dir: Path) -> None:
    source = next(s for s in SAMPLE_SOURCES if s.name == "rocket")
    with Image.open(sample.locate_source(source)) as img:
        expected = np.asarray(img.convert("RGB"))
    with Image.open(sample_dir / "train" / "rocket.png") as img:
        np.testing.assert_array_equal(np.asarray(img), expected)


def test_changed_source_checksum_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = dataclasses.replace(SAMPLE_SOURCES[0], sha256="0" * 64)
    monkeypatch.setattr(sample, "SAMPLE_SOURCES", (bad,))
    with pytest.raises(
        SampleSourceError, match=r"^astronaut: .*astronaut\.png has SHA-256 88431cd9.*expected 0{64}"
    ) as err:
        build_sample_dataset(tmp_path)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "manifest.json").exists()


def test_missing_source_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gone = dataclasses.replace(SAMPLE_SOURCES[0], path="data/no_such_image.png")
    monkeypatch.setattr(sample, "SAMPLE_SOURCES", (gone,))
    with pytest.raises(SampleSourceError, match=r"no_such_image\.png is not shipped by scikit-image"):
        build_sample_dataset(tmp_path)


def test_holdout_photos_are_new_pixels_in_a_flat_folder(sample_dir: Path, tmp_path: Path) -> None:
    entries = build_holdout_set(tmp_path)
    names = ["brick", "camera", "grass", "gravel", "hubble", "ihc", "moon", "motorcycle_right", "retina"]
    assert [e["name"] for e in entries] == [f"{n}.png" for n in names]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{n}.png" for n in names]  # images only
    manifest = json.loads((sample_dir / "manifest.json").read_text())
    assert {e["pixels_sha256"] for e in entries}.isdisjoint(e["pixels_sha256"] for e in manifest["images"])
    assert {s.path for s in HOLDOUT_SOURCES}.isdisjoint(s.path for s in SAMPLE_SOURCES)
    for entry in entries:
        assert entry["split"] == "holdout" and entry["licence"] and entry["attribution"]
        with Image.open(tmp_path / entry["name"]) as img:
            assert img.mode == "RGB" and img.size == (entry["width"], entry["height"])
            if entry["name"] == "camera.png":  # greyscale sources: three equal channels
                rgb = np.asarray(img)
                assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert (entries[-1]["width"], entries[-1]["height"]) == (1411, 1411)


def test_holdout_checksum_change_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = dataclasses.replace(HOLDOUT_SOURCES[0], sha256="0" * 64)
    monkeypatch.setattr(sample, "HOLDOUT_SOURCES", (bad,))
    with pytest.raises(SampleSourceError, match=r"^brick: .*brick\.png has SHA-256 7966caf3.*expected 0{64}"):
        build_holdout_set(tmp_path)
    assert not list(tmp_path.iterdir())


def _write_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png")


def test_import_splits_deterministically_and_leaves_the_source_alone(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write_images(src, 10)
    (src / "notes.txt").write_text("not an image")
    before = _tree(src)
    first = import_dataset(src, tmp_path / "a", val_fraction=0.2, seed=3)
    import_dataset(src, tmp_path / "b", val_fraction=0.2, seed=3)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert _tree(src) == before
    splits = json.loads((tmp_path / "a" / "splits.json").read_text())
    assert len(splits["val"]) == 2 and len(splits["train"]) == 8
    assert sorted(splits["train"] + splits["val"]) == [f"img{i:02d}.png" for i in range(10)]
    assert first["ignored"] == ["notes.txt"]
    for entry in first["images"]:  # byte-for-byte copies
        assert entry["sha256"] == sha256_file(src / entry["name"])
        assert (tmp_path / "a" / entry["split"] / entry["name"]).is_file()
    other = import_dataset(src, tmp_path / "c", val_fraction=0.2, seed=4)
    assert {e["name"] for e in other["images"] if e["split"] == "val"} != set(splits["val"])
    assert not [p for p in (tmp_path / "a").rglob(".*")]


def test_import_explicit_split_and_existing_train_val_folders(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write_images(src, 4)
    manifest = import_dataset(src, tmp_path / "out", val_names=["img01", "img03.png"])
    assert sorted(e["name"] for e in manifest["images"] if e["split"] == "val") == ["img01.png", "img03.png"]
    # A folder already in the layout keeps its split.
    again = import_dataset(tmp_path / "out", tmp_path / "copy")
    assert {(e["name"], e["split"]) for e in again["images"]} == {(e["name"], e["split"]) for e in manifest["images"]}
    with pytest.raises(ValueError, match="val_names not found among the images: img09"):
        import_dataset(src, tmp_path / "x", val_names=["img09"])


def test_import_refuses_unsafe_destinations(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write_images(src, 3)
    with pytest.raises(ValueError, match="must not be the source folder or inside it"):
        import_dataset(src, src / "dataset")
    (tmp_path / "out" / "train").mkdir(parents=True)
    (tmp_path / "out" / "train" / "stranger.png").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"holds 1 image\(s\) not in this import \(e.g. stranger.png\)"):
        import_dataset(src, tmp_path / "out", val_fraction=0.0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        import_dataset(tmp_path / "empty", tmp_path / "out2")


def test_download_div2k_offline_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(div2k, "DIV2K_BASE_URL", "http://127.0.0.1:9/")  # nothing listens on the discard port
    with pytest.raises(
        DownloadError, match=r"^http://127.0.0.1:9/DIV2K_train_HR.zip: download failed .*offline"
    ) as err:
        div2k.download_div2k(tmp_path, timeout=5)
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "archives").glob("*"))  # no partial archive


def _fake_archive(folder: Path, name: str, inner: str) -> str:
    buf = io.BytesIO()
    png = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png, format="PNG")
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{inner}/0001.png", png.getvalue())
    (folder / name).write_bytes(buf.getvalue())
    return hashlib.md5(buf.getvalue()).hexdigest()


def test_download_div2k_verifies_and_unpacks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server = tmp_path / "server"
    server.mkdir()
    md5s = {name: _fake_archive(server, name, inner) for name, (_, _, inner) in div2k.DIV2K_ARCHIVES.items()}
    monkeypatch.setattr(div2k, "DIV2K_BASE_URL", server.as_uri() + "/")
    # Wrong checksum: error, archive removed, nothing unpacked.
    with pytest.raises(DownloadError, match=r"DIV2K_train_HR.zip: MD5 [0-9a-f]{32}, expected bdc2d933"):
        div2k.download_div2k(tmp_path / "out")
    assert not (tmp_path / "out" / "archives" / "DIV2K_train_HR.zip").exists()
    assert not (tmp_path / "out" / "train").exists()
    archives = {n: (md5s[n], split, inner) for n, (_, split, inner) in div2k.DIV2K_ARCHIVES.items()}
    monkeypatch.setattr(div2k, "DIV2K_ARCHIVES", archives)
    out = div2k.download_div2k(tmp_path / "out")
    assert (out / "train" / "0001.png").is_file() and (out / "val" / "0001.png").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
