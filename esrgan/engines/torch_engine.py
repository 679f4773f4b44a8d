"""The torch engine: an ``RRDBNet`` through :func:`esrgan.inference.upscale_tensor` (imports torch).

From an ONNX file it rebuilds the ``RRDBNet`` from the file's metadata and its initializers (the
exporter keeps the parameter names), so every engine can run a registered ``model.onnx``.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from esrgan.engines.base import Engine
from esrgan.engines.metadata import ModelInfo
from esrgan.engines.tiling import DEFAULT_TILE_PAD


def module_info(module: Any, digest: str = "") -> ModelInfo:
    """The :class:`ModelInfo` of an ``RRDBNet``-like module."""
    return ModelInfo(
        scale=int(module.scale),
        in_ch=int(getattr(module, "in_ch", 3)),
        out_ch=int(getattr(module, "out_ch", 3)),
        num_feat=int(getattr(module, "num_feat", 64)),
        num_block=int(getattr(module, "num_block", 23)),
        num_grow=int(getattr(module, "num_grow", 32)),
        digest=digest,
    )


def resolve_precision(precision: str, device: str) -> str:
    """torch's ``auto``: fp16 on CUDA, fp32 (the reference every fidelity bound is measured against) elsewhere."""
    if precision == "auto":
        return "fp16" if device.startswith("cuda") else "fp32"
    return precision


class TorchEngine(Engine):
    """PyTorch eager, channels_last, with CPU/CUDA autocast for bf16 and fp16."""

    name = "torch"

    def __init__(self, module: Any, precision: str = "auto", digest: str = "") -> None:
        device = next(module.parameters()).device
        dev = "cpu" if device.type == "cpu" else str(device)
        super().__init__(module_info(module, digest), resolve_precision(precision, dev), dev)
        self.module = module

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.upscale_nchw(x, 0, 0)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.run(x)

    def upscale_nchw(self, x: np.ndarray, tile: int = 0, tile_pad: int = DEFAULT_TILE_PAD) -> np.ndarray:
        import torch

        from esrgan.inference import Precision, upscale_tensor

        precision = cast(Precision, self.precision)
        out = upscale_tensor(self.module, torch.from_numpy(np.asarray(x, dtype=np.float32)), tile, tile_pad, precision)
        return out.numpy()


def module_from_onnx(onnx_bytes: bytes, info: ModelInfo) -> Any:
    """An eval-mode CPU ``RRDBNet`` holding the initializers of an ONNX export of one."""
    import onnx
    import torch
    from onnx import numpy_helper

    from esrgan.models import RRDBNet

    model = onnx.load_model_from_string(onnx_bytes)
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    # The exporter stores equal tensors once (all-zero biases) and names the others with Identity nodes.
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in arrays:
            arrays[node.output[0]] = arrays[node.input[0]]
    module = RRDBNet(info.in_ch, info.out_ch, info.scale, info.num_feat, info.num_block, info.num_grow)
    # Map the graph's convolutions, in order, onto the module's: both follow the forward pass.
    convs = [name for name, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)]
    nodes = [node for node in model.graph.node if node.op_type == "Conv"]
    if len(nodes) != len(convs):
        raise ValueError(f"the ONNX graph has {len(nodes)} convolutions, an RRDBNet of its metadata {len(convs)}")
    target = module.state_dict()
    state = {}
    for name, node in zip(convs, nodes, strict=True):
        for suffix, ref in zip(("weight", "bias"), node.input[1:3], strict=False):
            key = f"{name}.{suffix}"
            if ref not in arrays or arrays[ref].shape != tuple(target[key].shape):
                raise ValueError(f"the ONNX graph does not match an RRDBNet of its metadata at {key}")
            state[key] = torch.from_numpy(arrays[ref].copy())
    module.load_state_dict(state)
    return module.eval()
