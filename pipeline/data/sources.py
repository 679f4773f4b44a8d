"""Where the first KFP step gets the HR dataset (``train/`` and ``val/`` folders of images).

Three sources, one function:

- ``dvc``: the dataset tracked by ``data.dvc`` in a Git repository, fetched from that repository's
  DVC remote at a revision (what ``dvc get URL data --rev REV`` does). The remote's credentials
  come from the environment (``AWS_ACCESS_KEY_ID``... from a Kubernetes secret).
- ``s3``: every object under an ``s3://bucket/prefix/`` (boto3; ``AWS_ENDPOINT_URL`` for MinIO or
  SeaweedFS).
- ``local``: a folder on this machine (``esrgan kfp run-local``, or a mounted volume).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from esrgan.data.layout import TRAIN_DIR, VAL_DIR
from pipeline.errors import PipelineError

Kind = Literal["dvc", "s3", "local"]
KINDS: tuple[Kind, ...] = get_args(Kind)


class DataSourceError(PipelineError, ValueError):
    """The source is misconfigured or does not hold a ``train``/``val`` dataset."""


def source_kind(text: str) -> Kind:
    """``text`` (a pipeline parameter) as a :data:`Kind`, or :class:`DataSourceError`."""
    for kind in KINDS:
        if text == kind:
            return kind
    raise DataSourceError(f"data source kind {text!r}: expected dvc, s3 or local")


@dataclass(frozen=True)
class DataSource:
    """``kind`` and ``uri`` (Git URL, ``s3://`` prefix or folder); ``rev``/``path`` for DVC only."""

    kind: Kind
    uri: str
    rev: str = ""
    path: str = "data"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fetch_dataset(source: DataSource, dest: Path) -> Path:
    """Materialise the dataset into ``dest`` (which must not exist yet) and check its layout."""
    if dest.exists() and any(dest.iterdir()):
        raise DataSourceError(f"{dest}: not empty")
    if source.kind == "local":
        _fetch_local(Path(source.uri), dest)
    elif source.kind == "dvc":
        _fetch_dvc(source, dest)
    elif source.kind == "s3":
        _fetch_s3(source.uri, dest)
    else:
        raise DataSourceError(f"data source kind {source.kind!r}: expected dvc, s3 or local")
    missing = [d for d in (TRAIN_DIR, VAL_DIR) if not (dest / d).is_dir()]
    if missing:
        raise DataSourceError(f"{source.kind} source {source.uri}: no {' or '.join(missing)} folder in the dataset")
    return dest


def _fetch_local(src: Path, dest: Path) -> None:
    if not src.is_dir():
        raise DataSourceError(f"{src}: no such folder")
    if dest.exists():
        dest.rmdir()
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".*"))


def _fetch_dvc(source: DataSource, dest: Path) -> None:
    # Repo.get is `dvc get`: a shallow clone at rev, then the tracked folder from the remote only.
    # It streams the files from the remote into dest without filling a DVC cache: one copy.
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.repo.open_repo import clean_repos

    if dest.exists():
        dest.rmdir()
    try:
        Repo.get(source.uri, source.path, out=str(dest), rev=source.rev or None)
    except DvcException as exc:
        raise DataSourceError(f"dvc get {source.uri} {source.path} --rev {source.rev or 'HEAD'}: {exc}") from exc
    finally:
        # What the dvc CLI does after every command: remove the temporary clone and cache folders
        # (left in $TMPDIR otherwise, one pair per fetch in a long-lived process).
        clean_repos()


def _fetch_s3(uri: str, dest: Path) -> None:
    # storage.download_prefix: retries, multipart, atomic swap, one-line errors without secrets.
    from pipeline.data import storage

    try:
        storage.download_prefix(uri, dest)
    except (storage.StorageError, ValueError) as exc:
        raise DataSourceError(str(exc)) from exc
