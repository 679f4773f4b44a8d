"""The two torch-free engines: ONNX Runtime and OpenVINO, both on the CPU, from ONNX bytes.

Both run the exported graph with dynamic height and width, so one compiled model serves every
image and tile size: on a 2-core Zen 4, OpenVINO runs the dynamic-shape model as fast as one
reshaped to the exact input (0.84 s both, paper x4 at 64x64, bf16), so the shape bucket of the
compiled-model cache is "any size" and a folder of photos compiles once.
"""

from __future__ import annotations

import logging
import os
import queue
from pathlib import Path
from typing import Any

import numpy as np

from esrgan.engines.base import Engine
from esrgan.engines.metadata import ModelInfo

log = logging.getLogger(__name__)

#: OpenVINO's names of our precisions (``INFERENCE_PRECISION_HINT``).
OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
OV_PRECISION_BACK = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def cache_dir() -> Path:
    """Where compiled models are kept on disk: ``$ESRGAN_CACHE_DIR``, else ``~/.cache/esrgan``."""
    env = os.environ.get("ESRGAN_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "esrgan"


class OnnxRuntimeEngine(Engine):
    """ONNX Runtime's CPU execution provider, fp32 (its CPU kernels have no faster float type)."""

    name = "onnxruntime"

    def __init__(self, session: Any, info: ModelInfo) -> None:
        super().__init__(info, "fp32")
        self._session = session  # InferenceSession.run is thread-safe
        self._input = session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        (out,) = self._session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(out, dtype=np.float32)


def ort_session(onnx_bytes: bytes) -> Any:
    """A CPU inference session (all graph optimisations; threads: ONNX Runtime's default, one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    return ort.InferenceSession(onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"])


class OpenVinoEngine(Engine):
    """OpenVINO's CPU plugin; bf16 (``INFERENCE_PRECISION_HINT``) where the CPU computes it natively."""

    name = "openvino"

    def __init__(self, compiled: Any, info: ModelInfo, precision: str) -> None:
        super().__init__(info, precision)
        self._compiled = compiled
        # An infer request serves one call at a time: a pool lets threads share the engine.
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def run(self, x: np.ndarray) -> np.ndarray:
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = self._compiled.create_infer_request()
        try:
            request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
            return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        finally:
            self._requests.put(request)


_core: Any = None


def ov_core() -> Any:
    """One OpenVINO ``Core`` per process, with the on-disk compiled-model cache switched on."""
    global _core
    if _core is None:
        import openvino as ov  # type: ignore[import-untyped]

        core = ov.Core()
        folder = cache_dir() / "openvino"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(folder)})
        except OSError as exc:  # a read-only home: compile every time rather than fail
            log.debug("OpenVINO model cache disabled: cannot create %s (%s)", folder, exc.strerror or exc)
        _core = core
    return _core


def ov_supports(precision: str) -> bool:
    """Whether OpenVINO's CPU plugin computes ``precision`` natively on this CPU."""
    capabilities = set(ov_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16"}[precision] in capabilities


def ov_compile(onnx_bytes: bytes, precision: str) -> tuple[Any, str]:
    """Compile for the CPU with the latency hint (all cores on one request); returns the compiled
    model and the precision OpenVINO really chose."""
    core = ov_core()
    model = core.read_model(onnx_bytes)
    compiled = core.compile_model(
        model, "CPU", {"INFERENCE_PRECISION_HINT": OV_PRECISION[precision], "PERFORMANCE_HINT": "LATENCY"}
    )
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    return compiled, OV_PRECISION_BACK.get(name, precision)
