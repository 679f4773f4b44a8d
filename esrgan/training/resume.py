"""Training checkpoints: atomic, pruned, and readable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled objects):

``format``, ``stage``, ``iteration``, ``config`` (the validated config as a
JSON-style dict), ``generator``, ``generator_ema`` (when EMA is on), ``discriminator`` (GAN),
``optimizer_g``, ``optimizer_d`` (GAN), ``scaler_g``/``scaler_d`` (fp16), ``rng`` (see
:func:`rng_state`), ``metrics`` (last logged values).

Files are ``<run>/checkpoints/iter_<iteration:08d>.pth``; the newest ``keep`` are kept.
``esrgan.load_generator`` reads them directly (it prefers ``generator_ema``).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from esrgan.fileio import atomic_write

FORMAT = "esrgan-train/1"
_NAME = re.compile(r"^iter_(\d{8,})\.pth$")


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states as tensors and plain numbers."""
    py_version, py_internal, py_gauss = random.getstate()
    # numpy's stubs type the default (legacy=True) call as returning the dict form; it returns the tuple.
    legacy = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = legacy
    state: dict[str, Any] = {
        "python": torch.tensor(py_internal, dtype=torch.int64),
        "python_version": int(py_version),
        "python_gauss": py_gauss,
        "numpy": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_meta": [str(np_name), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    name, pos, has_gauss, gauss = state["numpy_meta"]
    np.random.set_state((name, state["numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: str | Path, iteration: int) -> Path:
    return checkpoint_dir(run_dir) / f"iter_{iteration:08d}.pth"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(run_dir: str | Path, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` atomically as ``iter_<iteration>.pth`` and delete all but the newest ``keep``."""
    path = checkpoint_path(run_dir, int(state["iteration"]))
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp))
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (nothing in it is executed)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not an {FORMAT} training checkpoint")
    return state
