"""The one rule for deleting files: only what esrgan created, and can prove it created.

A folder is *owned* when it holds the marker file :data:`MARKER`, which esrgan writes only into a
folder it has just created or found empty (:func:`claim`). Only an owned folder is ever emptied or
removed (:func:`reset`), and only files of esrgan's own naming are pruned from it
(:func:`prune`). A folder that already holds someone else's files is never claimed: the caller
gets :class:`NotOwnedError` and nothing is touched. The marker's bytes are fixed (no time stamp),
so a DVC output that holds one keeps its hash.

Callers run every check that can fail early (parameters, device, inputs) *before* they call
:func:`reset` or :func:`prune`: nothing is deleted for a run that is refused anyway.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from esrgan.errors import EsrganError

#: The marker's file name; its presence is the proof of ownership.
MARKER = ".esrgan-owned"
_MARKER_TEXT = "This folder was created by esrgan-pipeline, which may delete or replace what it holds.\n"

__all__ = ["MARKER", "NotOwnedError", "claim", "is_owned", "prune", "reset"]


class NotOwnedError(EsrganError, FileExistsError):
    """A folder esrgan would empty or write into holds files it did not create."""


def is_owned(folder: str | os.PathLike[str], legacy_markers: Iterable[str] = ()) -> bool:
    """Whether ``folder`` carries esrgan's marker (or one of ``legacy_markers``, files that only
    esrgan writes there, for folders made before the marker existed). A symbolic link never is."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return False
    return any((folder / name).is_file() and not (folder / name).is_symlink() for name in (MARKER, *legacy_markers))


def _write_marker(folder: Path) -> None:
    from esrgan.fileio import atomic_write

    atomic_write(folder / MARKER, lambda tmp: Path(tmp).write_text(_MARKER_TEXT, encoding="utf-8"))


def claim(folder: str | os.PathLike[str], purpose: str, legacy_markers: Iterable[str] = ()) -> Path:
    """Make ``folder`` esrgan's: create it (or take it if empty) and write the marker.

    Args:
        folder: the folder a stage writes its outputs into.
        purpose: what the folder is for, in the error message (``"run folder"``).
        legacy_markers: files whose presence proved ownership before the marker existed.

    Raises:
        NotOwnedError: ``folder`` is a file, a symbolic link, or a folder holding files without the
            marker; nothing was changed.
    """
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise NotOwnedError(f"{folder}: not a folder esrgan created (a file or a link); give a new or empty {purpose}")
    if folder.is_dir() and not is_owned(folder, legacy_markers) and any(folder.iterdir()):
        raise NotOwnedError(
            f"{folder}: holds files esrgan did not write (no {MARKER} marker); give a new or empty {purpose}, "
            "nothing was deleted"
        )
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / MARKER).is_file():
        _write_marker(folder)
    return folder


def reset(folder: str | os.PathLike[str], purpose: str, legacy_markers: Iterable[str] = ()) -> Path:
    """Empty an owned ``folder`` (or create it) and leave it claimed.

    Raises:
        NotOwnedError: as :func:`claim`, before anything is deleted.
    """
    folder = claim(folder, purpose, legacy_markers)
    for entry in folder.iterdir():
        if entry.name == MARKER:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return folder


def prune(folder: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """Delete the files ``names`` (plain names, no paths) from ``folder`` if it is owned.

    Returns the files deleted; an unowned folder, a missing file, a folder or a link is left alone.
    """
    folder = Path(folder)
    if not is_owned(folder):
        return []
    removed = []
    for name in names:
        path = folder / name
        if Path(name).name != name or name == MARKER or path.is_symlink() or not path.is_file():
            continue
        path.unlink()
        removed.append(path)
    return removed
