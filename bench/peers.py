"""The reference implementations we compare against, loaded with *our* weights.

* spandrel: ``spandrel.ModelLoader().load_from_state_dict(state)`` and spandrel's own module.
* BasicSR (PyPI ``basicsr-fixed``): its unmodified source files, imported directly from the sdist
  unpacked by ``bench/fetch_basicsr.py`` (or from an installed ``basicsr`` whose top-level import
  works, e.g. in ``bench/.venv-basicsr``). Only the packages those files import but do not use
  for ESRGAN are stubbed: ``basicsr.utils`` (a logger) and ``basicsr.ops.dcn`` (deformable
  convolutions, a compiled extension). Set ``BASICSR_SRC`` to another unpacked source tree.

Every loader raises :class:`PeerUnavailable` with a one-line reason, so a script can skip the peer.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

BENCH_DIR = Path(__file__).resolve().parent


class PeerUnavailable(RuntimeError):
    """A peer implementation cannot be loaded here; the message says why."""


# ---- spandrel --------------------------------------------------------------------------------


def spandrel_generator(state: dict[str, torch.Tensor]) -> nn.Module:
    """spandrel's ESRGAN module holding ``state`` (BasicSR key layout), in eval mode."""
    try:
        import spandrel
    except ImportError as exc:
        raise PeerUnavailable(f"spandrel is not installed ({exc})") from None
    desc = spandrel.ModelLoader().load_from_state_dict(state)
    if desc.architecture.id != "ESRGAN":
        raise PeerUnavailable(f"spandrel recognised {desc.architecture.id}, not ESRGAN")
    return desc.model.eval()


def spandrel_version() -> str:
    import spandrel

    return str(getattr(spandrel, "__version__", "?"))


# ---- BasicSR ---------------------------------------------------------------------------------


def basicsr_source() -> Path:
    """Directory holding the ``basicsr`` package source, or :class:`PeerUnavailable`."""
    candidates: list[Path] = []
    if os.environ.get("BASICSR_SRC"):
        candidates.append(Path(os.environ["BASICSR_SRC"]))
    candidates += sorted((BENCH_DIR / ".cache").glob("basicsr-fixed-*"), reverse=True)
    for path in candidates:
        if (path / "basicsr" / "archs" / "rrdbnet_arch.py").is_file():
            return path
    spec = importlib.util.find_spec("basicsr")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).parent
    raise PeerUnavailable("BasicSR source not found: run `python bench/fetch_basicsr.py` (or set BASICSR_SRC)")


def _package(name: str, path: Path | None) -> types.ModuleType:
    """An empty package ``name`` whose submodules are looked up in ``path`` (no __init__ run)."""
    module = types.ModuleType(name)
    module.__path__ = [str(path)] if path is not None else []
    sys.modules[name] = module
    return module


class _Stub(nn.Module):
    """Stands in for BasicSR's compiled deformable convolution (unused by ESRGAN)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise PeerUnavailable("basicsr.ops.dcn is stubbed in the benchmarks")


def basicsr_modules() -> dict[str, types.ModuleType]:
    """Import BasicSR's ESRGAN files; returns ``{short name: module}``."""
    if "basicsr.archs.rrdbnet_arch" in sys.modules and "basicsr.models.esrgan_model" in sys.modules:
        names = (
            "archs.rrdbnet_arch",
            "archs.discriminator_arch",
            "archs.vgg_arch",
            "losses.basic_loss",
            "losses.gan_loss",
            "models.esrgan_model",
        )
        return {n.split(".")[-1]: sys.modules[f"basicsr.{n}"] for n in names}
    root = basicsr_source() / "basicsr"
    _package("basicsr", root)
    for sub in ("archs", "losses", "models", "ops", "utils"):
        _package(f"basicsr.{sub}", root / sub)
    utils = sys.modules["basicsr.utils"]
    utils.get_root_logger = lambda *a, **k: logging.getLogger("basicsr")  # type: ignore[attr-defined]
    dcn = types.ModuleType("basicsr.ops.dcn")
    dcn.ModulatedDeformConvPack = _Stub  # type: ignore[attr-defined]
    dcn.modulated_deform_conv = None  # type: ignore[attr-defined]
    sys.modules["basicsr.ops.dcn"] = dcn
    # esrgan_model.py subclasses SRGANModel, whose import chain pulls in all of BasicSR's training
    # machinery; its optimize_parameters (the code we time) uses nothing from the base class.
    srgan = types.ModuleType("basicsr.models.srgan_model")
    srgan.SRGANModel = type("SRGANModel", (), {})  # type: ignore[attr-defined]
    sys.modules["basicsr.models.srgan_model"] = srgan
    try:
        mods = {
            "rrdbnet_arch": importlib.import_module("basicsr.archs.rrdbnet_arch"),
            "discriminator_arch": importlib.import_module("basicsr.archs.discriminator_arch"),
            "vgg_arch": importlib.import_module("basicsr.archs.vgg_arch"),
            "basic_loss": importlib.import_module("basicsr.losses.basic_loss"),
            "gan_loss": importlib.import_module("basicsr.losses.gan_loss"),
            "esrgan_model": importlib.import_module("basicsr.models.esrgan_model"),
        }
    except Exception as exc:  # a broken or incompatible source tree
        raise PeerUnavailable(f"cannot import BasicSR's files from {root} ({type(exc).__name__}: {exc})") from None
    return mods


def basicsr_version() -> str:
    path = basicsr_source()
    version = path / "VERSION"
    return f"basicsr-fixed {version.read_text().strip()}" if version.is_file() else str(path)


def basicsr_generator(state: dict[str, torch.Tensor], **arch: int) -> nn.Module:
    """BasicSR's ``RRDBNet`` holding ``state`` (our key layout is BasicSR's), in eval mode."""
    rrdbnet_arch = basicsr_modules()["rrdbnet_arch"]
    cfg = {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 64, "num_block": 23, "num_grow_ch": 32} | arch
    net = rrdbnet_arch.RRDBNet(**cfg)
    net.load_state_dict(state, strict=True)
    return net.eval()
