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

import os
import warnings
from pathlib import Path

import torch

from esrgan.fileio import atomic_write
from esrgan.models import RRDBNet

#: Opset 17 is read by every maintained runtime (onnxruntime >= 1.12, TensorRT 8.6, OpenVINO).
DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "lr", "sr"


def export_onnx(model: RRDBNet, path: str | os.PathLike[str], opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` as an ONNX file with dynamic batch, height and width (atomically).

    Args:
        model: the generator (any device; it is exported from a CPU float32 copy).
        path: destination ``.onnx`` file; replaced only once the export succeeded.
        opset: ONNX opset version.

    Returns:
        ``path``.
    """
    import copy

    cpu = copy.deepcopy(model).float().cpu().eval()
    # Scales 1 and 2 fold space into channels, so H and W must be multiples of the fold factor.
    size = 4 * cpu.unshuffle
    example = torch.rand(1, cpu.in_ch, size, size + cpu.unshuffle * 2)

    def _write(tmp: str) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": chosen on purpose, see above
            torch.onnx.export(
                cpu,
                (example,),
                tmp,
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

    return atomic_write(path, _write)


def run_onnx(path: str | os.PathLike[str], lr: torch.Tensor) -> torch.Tensor:
    """Run an exported file with ONNX Runtime on the CPU (for checks and notebooks)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: lr.detach().cpu().float().numpy()})
    return torch.from_numpy(out)
