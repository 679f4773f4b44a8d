"""The DVC data source writes each file once: no DVC cache copy beside the fetched dataset.

At DIV2K scale a second copy is gigabytes of pod disk; ``dvc get`` (``Repo.get``) streams from the
remote into the destination, and this pins that down for the DVC version in constraints.txt.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipeline.data_source import DataSource, fetch_dataset


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


def test_dvc_source_fetches_each_file_once(dvc_repo: Path, tmp_path: Path) -> None:
    from dvc.repo.open_repo import CACHE_DIRS

    dest = tmp_path / "fetched"
    fetch_dataset(DataSource("dvc", f"file://{dvc_repo}"), dest)
    fetched = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert fetched == ["train/0001.png", "val/0001.png"]
    assert (dest / "train" / "0001.png").read_bytes() == (dvc_repo / "data" / "train" / "0001.png").read_bytes()
    assert os.stat(dest / "train" / "0001.png").st_nlink == 1  # a file of its own, not a link into a cache
    cache = CACHE_DIRS.get(f"file://{dvc_repo}")
    assert cache is None or not [p for p in Path(cache).rglob("*") if p.is_file()]
