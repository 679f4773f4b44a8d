"""Choosing, building and caching engines: :func:`load_engine`.

``auto`` picks the fastest engine and precision installed here whose output stays within the
fidelity bound of torch fp32 (>= 50 dB PSNR and at most 2 grey levels on the shipped sample
photos; ``tests/esrgan/engines/test_fidelity.py`` asserts it for every pair ``auto`` can pick on the
machine that runs the tests). How ``auto`` knows which is fastest: the order below, measured by
``bench/inference.py`` (BENCHMARKS.md), and the CPU's flags: bf16 only where it is native
(AVX512_BF16 or AMX), where it is ~2x fp32; elsewhere fp32.

Compiled engines are cached per (engine, weights digest, shape bucket, precision, device) in an
in-process LRU of :data:`CACHE_SIZE` entries, and OpenVINO also keeps its compiled blobs under
``$ESRGAN_CACHE_DIR/openvino`` (default ``~/.cache/esrgan``), so a second process skips most of
the compile. The runtimes take dynamic height and width, so the shape bucket is "any": a folder of
photos of different sizes compiles once.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from esrgan.engines.base import ENGINES, PRECISIONS, Engine
from esrgan.engines.metadata import MetadataError, ModelInfo, file_digest, read_props
from esrgan.errors import EsrganError

log = logging.getLogger(__name__)

#: Fastest first, on CPUs with native bf16 (2-core Zen 4, paper x4; BENCHMARKS.md "Inference engines").
AUTO_CPU_BF16: tuple[tuple[str, str], ...] = (
    ("openvino", "bf16"),
    ("torch", "bf16"),
    ("openvino", "fp32"),
    ("onnxruntime", "fp32"),
    ("torch", "fp32"),
)
#: Fastest first, on CPUs without it (bf16 would be emulated, slower than fp32).
AUTO_CPU: tuple[tuple[str, str], ...] = (("openvino", "fp32"), ("onnxruntime", "fp32"), ("torch", "fp32"))
#: On CUDA only torch runs here; fp16 as before.
AUTO_CUDA: tuple[tuple[str, str], ...] = (("torch", "fp16"),)
#: Compiled engines kept in one process.
CACHE_SIZE = 8
#: What to install for each engine.
PACKAGES = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}


class EngineUnavailable(EsrganError, RuntimeError):
    """An engine that cannot run here (not installed, or no such precision on this CPU); one line."""


class EngineLoadError(EsrganError, ValueError):
    """A model file that no engine can load (missing, not ONNX, not a generator); one line naming it."""


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags (``/proc/cpuinfo``; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512_BF16 or AMX-BF16), where bf16 is ~2x fp32."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def auto_order(device: str = "cpu") -> tuple[tuple[str, str], ...]:
    """``(engine, precision)`` pairs that ``auto`` tries, fastest first, on ``device`` here."""
    if device.startswith("cuda"):
        return AUTO_CUDA
    return AUTO_CPU_BF16 if native_bf16() else AUTO_CPU


def precision_for(dtype: Any, precision: str = "auto", device: str = "cpu") -> str:
    """``precision`` for an image of ``dtype``: ``auto`` stays ``auto`` for 8-bit images and becomes
    fp32 on the CPU for deeper ones (16-bit, float). The fidelity bound is in 8-bit grey levels;
    bf16 holds 8 significant bits, ~100-250 levels of a 16-bit image, which would waste its depth."""
    if precision != "auto" or np.dtype(dtype) == np.uint8 or device.startswith("cuda"):
        return precision
    return "fp32"


def candidates(engine: str, precision: str, device: str = "cpu") -> list[tuple[str, str]]:
    """The pairs to try, in order, for an ``engine`` / ``precision`` request (either may be ``auto``)."""
    if engine not in ("auto", *ENGINES):
        raise ValueError(f"engine must be auto or one of {ENGINES}, got {engine!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    order = auto_order(device)
    if engine == "auto" and precision == "auto":
        return list(order)
    if engine == "auto":  # the fastest engine for that precision; torch computes every precision
        found = [(e, p) for e, p in order if p == precision]
        engines = [e for e, _ in found] + [e for e in ("openvino", "torch") if e not in {e for e, _ in found}]
        return [(e, precision) for e in engines if not (e == "onnxruntime" and precision != "fp32")]
    if precision == "auto":  # torch's auto is its own reference rule; the others take their fastest
        if engine == "torch":
            return [("torch", "auto")]
        return [next(((e, p) for e, p in order if e == engine), (engine, "fp32"))]
    return [(engine, precision)]


# ---- the compiled-model cache ------------------------------------------------------------------

_cache: collections.OrderedDict[tuple[Any, ...], Engine] = collections.OrderedDict()
_lock = threading.RLock()
_compiles: collections.Counter[str] = collections.Counter()


def compile_count(engine: str | None = None) -> int:
    """How many engines this process has compiled (of one engine, or all): a cache miss each."""
    with _lock:
        return _compiles[engine] if engine else sum(_compiles.values())


def clear_cache() -> None:
    """Forget every compiled engine of this process (the on-disk OpenVINO cache stays)."""
    with _lock:
        _cache.clear()


def _cached(key: tuple[Any, ...], make: Callable[[], Engine]) -> Engine:
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        engine = make()
        _compiles[key[0]] += 1
        _cache[key] = engine
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return engine


# ---- sources -------------------------------------------------------------------------------------


_digests: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], str]] = weakref.WeakKeyDictionary()


def _module_digest(module: Any, digest: Callable[[Any], str]) -> str:
    """``digest(module)``, remembered until a weight changes (torch counts in-place writes per tensor),
    so upscaling image after image with the same module hashes its weights once."""
    versions = tuple(t._version for t in module.state_dict().values())
    with _lock:
        known = _digests.get(module)
    if known is not None and known[0] == versions:
        return known[1]
    value = digest(module)
    with _lock:
        _digests[module] = (versions, value)
    return value


def _is_module(model: Any) -> bool:
    return hasattr(model, "state_dict") and hasattr(model, "parameters")


def _read_source(model: str | os.PathLike[str] | bytes) -> tuple[bytes, str]:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "the ONNX model"
    path = Path(model)
    try:
        return path.read_bytes(), str(path)
    except FileNotFoundError:
        raise EngineLoadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EngineLoadError(f"{path}: is a folder, not an ONNX file") from None
    except OSError as exc:
        raise EngineLoadError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _info_from_bytes(data: bytes, where: str) -> ModelInfo | None:
    try:
        props = read_props(data)
    except MetadataError as exc:
        raise EngineLoadError(f"{where}: not an ONNX model ({exc})") from None
    return ModelInfo.from_props(props)


_exports: collections.OrderedDict[str, bytes] = collections.OrderedDict()
#: The info of each torch module seen, by digest: a cached export must describe the same model.
_SOURCE_INFO: dict[str, ModelInfo] = {}


def _onnx_of_module(module: Any, digest: str) -> bytes:
    """The ONNX export of a torch generator, kept in memory for the last few weights and on disk
    under ``$ESRGAN_CACHE_DIR/onnx`` (the paper model's export takes ~10-40 s on 2 cores; reading
    it back, well under one)."""
    with _lock:
        if digest in _exports:
            _exports.move_to_end(digest)
            return _exports[digest]
    from esrgan.engines.runtimes import cache_dir
    from esrgan.fileio import write_bytes

    cached = cache_dir() / "onnx" / f"{digest}.onnx"
    data = b""
    with contextlib.suppress(OSError):
        data = cached.read_bytes()
    try:
        if not data or ModelInfo.from_props(read_props(data)) != _SOURCE_INFO.get(digest):
            data = b""
    except MetadataError:  # a damaged cache file: export again, replace it
        data = b""
    if not data:
        from esrgan.export import onnx_bytes

        data = onnx_bytes(module)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(cached, data)
        except OSError as exc:  # a read-only home: export every time rather than fail
            log.debug("cannot keep the ONNX export in %s (%s)", cached.parent, exc.strerror or exc)
    with _lock:
        _exports[digest] = data
        while len(_exports) > 2:
            _exports.popitem(last=False)
    return data


def _probe_info(engine: Engine) -> ModelInfo:
    """Scale and channels of a model without our metadata, from one 4x4 forward pass."""
    out = engine.run(np.zeros((1, engine.in_ch, 4, 4), dtype=np.float32))
    return ModelInfo(scale=out.shape[-1] // 4, in_ch=engine.in_ch, out_ch=out.shape[1], digest=engine.info.digest)


# ---- building one engine -----------------------------------------------------------------------


def _require(package: str, engine: str) -> None:
    import importlib

    try:
        importlib.import_module(package)
    except ImportError:
        raise EngineUnavailable(f"{engine} is not installed (pip install {PACKAGES[engine]})") from None


class _Source:
    """A model to build engines from: a torch module and/or ONNX bytes, with its info."""

    def __init__(self, model: Any) -> None:
        self.module: Any = None
        self._bytes: bytes | None = None
        if _is_module(model):
            from esrgan.engines.torch_engine import module_info
            from esrgan.export import weights_sha256

            self.module = model
            self.info: ModelInfo | None = module_info(model, _module_digest(model, weights_sha256))
            self.where = "the model"
            _SOURCE_INFO[self.info.digest] = self.info
        else:
            self._bytes, self.where = _read_source(model)
            self.info = _info_from_bytes(self._bytes, self.where)

    @property
    def digest(self) -> str:
        if self.info is not None:
            return self.info.digest
        assert self._bytes is not None
        return file_digest(self._bytes)

    def onnx(self) -> bytes:
        if self._bytes is None:
            self._bytes = _onnx_of_module(self.module, self.digest)
        return self._bytes


def _build(source: _Source, engine: str, precision: str, device: str) -> Engine:
    if device != "cpu" and engine != "torch":
        raise EngineUnavailable(f"{engine} runs on the CPU here, not on {device}")
    key = (engine, source.digest, "any", precision, device)
    if engine == "torch":
        _require("torch", "torch")
        from esrgan.engines.torch_engine import TorchEngine, module_from_onnx

        if source.module is not None:
            return TorchEngine(source.module, precision, source.digest)  # nothing to compile
        if source.info is None:
            raise EngineUnavailable(
                f"torch cannot rebuild {source.where}: it lacks the esrgan.* metadata of export_onnx"
            )
        info = source.info
        return _cached(key, lambda: TorchEngine(module_from_onnx(source.onnx(), info), precision, source.digest))
    if engine == "onnxruntime":
        if precision != "fp32":
            raise EngineUnavailable(f"onnxruntime computes fp32 only on the CPU, not {precision}")
        _require("onnxruntime", engine)
        from esrgan.engines.runtimes import OnnxRuntimeEngine, ort_session

        def make_ort() -> Engine:
            info = source.info or ModelInfo(scale=4, digest=source.digest)
            built = OnnxRuntimeEngine(_session(ort_session, source), info)
            return built if source.info is not None else OnnxRuntimeEngine(built._session, _probe_info(built))

        return _cached(key, make_ort)
    _require("openvino", engine)
    from esrgan.engines.runtimes import OpenVinoEngine, ov_compile, ov_supports

    if not ov_supports(precision):
        raise EngineUnavailable(f"openvino: this CPU does not compute {precision} natively")

    def make_ov() -> Engine:
        compiled, actual = _session(lambda data: ov_compile(data, precision), source)
        info = source.info or ModelInfo(scale=4, digest=source.digest)
        built = OpenVinoEngine(compiled, info, actual)
        if source.info is None:
            built = OpenVinoEngine(compiled, _probe_info(built), actual)
        if actual != "fp32":
            built._fp32_factory = lambda: _build(source, "openvino", "fp32", device)
        return built

    return _cached(key, make_ov)


def _session(make: Callable[[bytes], Any], source: _Source) -> Any:
    """Run a runtime's loader, turning its (long, multi-line) refusal of a bad file into one line."""
    try:
        return make(source.onnx())
    except (MemoryError, EngineUnavailable):
        raise
    except Exception as exc:  # the runtimes raise their own exception types for a bad graph
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise EngineLoadError(f"{source.where}: cannot be loaded ({first})") from None


def load_engine(
    model: str | os.PathLike[str] | bytes | Any,
    engine: str = "auto",
    precision: str = "auto",
    device: str = "cpu",
    verbose: bool = False,
) -> Engine:
    """An engine running ``model``, ready for :func:`esrgan.engines.upscale_array`.

    Args:
        model: an ONNX file (path or bytes; best written by :func:`esrgan.export.export_onnx`, whose
            metadata gives scale, widths and the weights' digest), or a torch generator (``RRDBNet``),
            which is exported to ONNX in memory when another engine is asked for.
        engine: ``auto``, ``torch``, ``onnxruntime`` or ``openvino``.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``. With ``engine="auto"``, ``auto`` is the
            fastest pair within the fidelity bound (see the module docstring); for torch, ``auto`` is
            fp32 on the CPU (the reference) and fp16 on CUDA; for the others, their fastest.
        device: ``cpu``, or ``cuda[:N]`` for torch (a torch module's own device wins).
        verbose: log the skipped engines and the choice at INFO rather than DEBUG.

    Raises:
        EngineUnavailable: the engine asked for cannot run here (with ``auto``: none can).
        EngineLoadError: the file is missing or not a model.
        ValueError: an unknown engine or precision name.
    """
    say = log.info if verbose else log.debug
    wanted = candidates(engine, precision, device)  # bad names fail before any loading
    if _is_module(model):
        module: Any = model
        where = next(module.parameters()).device
        device = "cpu" if where.type == "cpu" else str(where)
        wanted = candidates(engine, precision, device)
    source = _Source(model)
    problems = []
    for name, prec in wanted:
        try:
            built = _build(source, name, prec, device)
        except EngineUnavailable as exc:
            if engine != "auto":
                raise
            say("engine %s %s skipped: %s", name, prec, exc)
            problems.append(str(exc))
            continue
        say("engine: %s %s on %s", built.name, built.precision, built.device)
        return built
    raise EngineUnavailable("no engine can run here: " + "; ".join(dict.fromkeys(problems)))
