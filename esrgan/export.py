"""ONNX export of the generator: a plain ``.onnx`` file that ONNX Runtime, TensorRT or Triton can run.

The graph takes ``lr``, an ``(N, C, H, W)`` float32 tensor in [0, 1], and returns ``sr`` of shape
``(N, C, sH, sW)``; batch, height and width are dynamic, so one file serves every image size.
Pre/post-processing (uint8 <-> float, padding for scales 1 and 2, tiling) stays with the caller,
as in :func:`esrgan.inference.upscale`.

We use PyTorch's TorchScript-based exporter (``dynamo=False``): it needs no package beyond
``onnx`` and handles this purely convolutional graph with dynamic axes in a second or two.
The ``torch.export``-based exporter would add ``onnxscript`` and take much longer on a CPU
for the same graph.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from esrgan.engines.metadata import ModelInfo, weights_digest, with_props
from esrgan.fileio import write_bytes
from esrgan.models import RRDBNet

#: Opset 17 is read by every maintained runtime (onnxruntime >= 1.12, TensorRT 8.6, OpenVINO).
DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "lr", "sr"


def weights_sha256(model: nn.Module) -> str:
    """Digest of a generator's weights (float32, name order): the ``esrgan.weights_sha256`` of its export."""
    items = []
    for name, tensor in model.state_dict().items():
        arr = tensor.detach().float().cpu().contiguous().numpy()
        items.append((name, arr.tobytes(), "float32", tuple(arr.shape)))
    return weights_digest(items)


def model_info(model: RRDBNet) -> ModelInfo:
    """The facts an exported file carries in its ``metadata_props`` (read by :mod:`esrgan.engines`)."""
    from esrgan.engines.torch_engine import module_info

    return module_info(model, weights_sha256(model))


def onnx_bytes(model: RRDBNet, opset: int = DEFAULT_OPSET) -> bytes:
    """The ONNX export of ``model`` (see :func:`export_onnx`), in memory."""
    import copy

    cpu = copy.deepcopy(model).float().cpu().eval()
    # Scales 1 and 2 fold space into channels, so H and W must be multiples of the fold factor.
    size = 4 * cpu.unshuffle
    example = torch.rand(1, cpu.in_ch, size, size + cpu.unshuffle * 2)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": chosen on purpose, see above
        torch.onnx.export(
            cpu,
            (example,),
            buffer,  # type: ignore[arg-type]  # a file object is accepted, as documented
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={
                INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"},
            },
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return with_props(buffer.getvalue(), model_info(cpu).to_props())


def export_onnx(model: RRDBNet, path: str | os.PathLike[str], opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` as an ONNX file with dynamic batch, height and width (atomically).

    The file's ``metadata_props`` carry the architecture and a digest of the weights
    (:class:`esrgan.engines.ModelInfo`), so engines and their compiled-model cache need no torch.

    Args:
        model: the generator (any device; it is exported from a CPU float32 copy).
        path: destination ``.onnx`` file; replaced only once the export succeeded.
        opset: ONNX opset version.

    Returns:
        ``path``.
    """
    return write_bytes(path, onnx_bytes(model, opset))


def run_onnx(path: str | os.PathLike[str], lr: torch.Tensor) -> torch.Tensor:
    """Run an exported file with ONNX Runtime on the CPU (for checks and notebooks)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: lr.detach().cpu().float().numpy()})
    return torch.from_numpy(out)
