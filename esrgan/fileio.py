"""Atomic file writes: a reader (or a crash) never sees half a checkpoint, dataset or metrics file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


#: The temporary file's name: ``.tmp-`` + 8 random characters + ``.tmp``, whatever the final name.
TMP_PREFIX, TMP_SUFFIX = ".tmp-", ".tmp"
#: Length in bytes of every temporary name (mkstemp adds 8 random characters).
TMP_NAME_BYTES = len(TMP_PREFIX) + 8 + len(TMP_SUFFIX)


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    The rename is atomic on POSIX file systems; on failure the temporary file is removed and
    any existing ``path`` is left untouched. The temporary name has a fixed, short length
    (:data:`TMP_NAME_BYTES`), not derived from ``path``'s name: a final name near the file
    system's 255-byte limit must not make the temporary one too long.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Atomically write ``data`` as indented JSON (NaN or infinity is an error: metrics must be real numbers or null)."""

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, allow_nan=False)
            fh.write("\n")

    return atomic_write(path, _write)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write raw bytes."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
