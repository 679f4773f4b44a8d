"""Inference engines behind one API: torch, ONNX Runtime and OpenVINO, in fp32, bf16 or fp16.

    from esrgan.engines import load_engine, upscale_array
    engine = load_engine("model.onnx")              # auto: the fastest pair within the fidelity bound
    sr = upscale_array(engine, image, tile=256)     # HxW / HxWx1-4, uint8 / uint16 / float

This package imports neither torch nor any runtime until an engine is built, so a serving image
with only NumPy, Pillow and one runtime can use it (torch is needed only for the torch engine and
for exporting a torch model). Tiling, memory planning and the colour/bit-depth rules are the ones
:func:`esrgan.upscale` uses: one implementation for every engine.
"""

from esrgan.engines.base import ENGINES, PRECISIONS, Engine, upscale_array, upscale_pil
from esrgan.engines.loader import (
    EngineLoadError,
    EngineUnavailable,
    auto_order,
    candidates,
    clear_cache,
    compile_count,
    cpu_flags,
    load_engine,
    native_bf16,
    precision_for,
)
from esrgan.engines.memory import InsufficientMemoryError, available_memory, plan_tile
from esrgan.engines.metadata import ModelInfo, read_props
from esrgan.engines.tiling import DEFAULT_TILE_PAD, Tile, tile_plan

__all__ = [
    "DEFAULT_TILE_PAD",
    "ENGINES",
    "PRECISIONS",
    "Engine",
    "EngineLoadError",
    "EngineUnavailable",
    "InsufficientMemoryError",
    "ModelInfo",
    "Tile",
    "auto_order",
    "available_memory",
    "candidates",
    "clear_cache",
    "compile_count",
    "cpu_flags",
    "load_engine",
    "native_bf16",
    "plan_tile",
    "precision_for",
    "read_props",
    "tile_plan",
    "upscale_array",
    "upscale_pil",
]
