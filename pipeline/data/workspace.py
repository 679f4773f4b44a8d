"""The HR dataset in the project workspace: build or import it, then (re-)track it with DVC.

Both operations build into a temporary folder beside the target and swap it in, so a failure
leaves the current dataset untouched. Replacing a different dataset needs ``force``, and even
then the old folder is moved aside (``data.replaced-<time>``), never deleted.

A bad import (``--val-fraction`` outside (0, 1), an empty source, unreadable images) is a
:class:`DataImportError`: one line per problem, nothing written.
"""

from __future__ import annotations

import contextlib
import filecmp
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from esrgan.data import build_sample_dataset, import_dataset
from esrgan.data.sample import UnreadableImagesError
from pipeline.errors import PipelineError


class DataImportError(PipelineError, ValueError):
    """``esrgan data import`` refused (bad option, source or images); nothing was written."""


def _same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def dvc_add(root: Path, target: Path) -> None:
    """``dvc add`` the folder (writes ``<target>.dvc`` and fills the cache) when ``root`` is a DVC repo."""
    if not (root / ".dvc").is_dir():
        return
    dvc = shutil.which("dvc") or str(Path(__import__("sys").executable).with_name("dvc"))
    result = subprocess.run([dvc, "add", "-q", str(target.relative_to(root))], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"dvc add {target}: {(result.stderr or result.stdout).strip().splitlines()[-1]}")


def _replace_with(build: Callable[[Path], Any], out: Path, force: bool, track: bool) -> dict[str, Any]:
    out = out.resolve()
    created = [p for p in (out.parent, *out.parent.parents) if not p.exists()]  # deepest first
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _swap_in(build, out, force, track)
    except BaseException:
        for folder in created:  # a refused build leaves no empty folders behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _swap_in(build: Callable[[Path], Any], out: Path, force: bool, track: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        staged = Path(tmp) / out.name
        manifest = build(staged)
        status = "created"
        if out.exists() and any(out.iterdir()):
            if _same_tree(staged, out):
                status = "unchanged"
            elif not force:
                raise FileExistsError(
                    f"{out}: holds a different dataset; pass --force to replace it (it is moved aside, not deleted)"
                )
            else:
                aside = out.with_name(f"{out.name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
                out.rename(aside)
                status = f"replaced (previous dataset moved to {aside.name})"
        if status != "unchanged":
            if out.exists():
                out.rmdir()  # empty
            staged.rename(out)
    root = _project_root(out)
    if track and root is not None:
        dvc_add(root, out)
    return {"path": str(out), "status": status, "images": len(manifest.get("images", []))}


def _project_root(path: Path) -> Path | None:
    for parent in [path.parent, *path.parent.parents]:
        if (parent / ".dvc").is_dir():
            return parent
    return None


def sample(out: Path, force: bool = False, track: bool = True) -> dict[str, Any]:
    """Build the embedded sample set into ``out`` (byte-identical everywhere, so ``data.dvc`` matches)."""
    return _replace_with(build_sample_dataset, out, force, track)


def import_folder(
    source: Path, out: Path, val_fraction: float = 0.1, force: bool = False, track: bool = True
) -> dict[str, Any]:
    """Copy a folder of HR images (DIV2K, DF2K, ...) into the train/val layout and re-track it.

    Raises:
        DataImportError: ``val_fraction`` not strictly between 0 and 1, an empty source, a bad
            destination, or images that cannot be decoded (one line each); nothing was written.
    """
    if not (math.isfinite(val_fraction) and 0.0 < val_fraction < 1.0):
        raise DataImportError(f"--val-fraction {val_fraction:.6g}: must be between 0 and 1 (exclusive), e.g. 0.1")

    def build(staged: Path) -> dict[str, Any]:
        try:
            return import_dataset(source, staged, val_fraction=val_fraction)
        except UnreadableImagesError as exc:
            raise DataImportError(
                [*exc.problems, f"nothing imported: fix or remove the unreadable images in {source}"]
            ) from None
        except ValueError as exc:
            raise DataImportError(str(exc)) from None

    return _replace_with(build, out, force, track)
