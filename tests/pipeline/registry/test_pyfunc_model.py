"""The served model picks its engine (``pipeline.registry.pyfunc_model.load_upscaler``): the fastest ONNX engine
on the version's ``model.onnx``, PyTorch when asked or when no engine can run the file, one-line
errors when a pinned engine cannot. End to end over HTTP and without torch:
``tests/e2e/test_serve_image.py``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from esrgan.export import export_onnx
from esrgan.models import RRDBNet, save_generator
from pipeline.registry.pyfunc_model import ModelLoadError, load_upscaler


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_block=1, num_grow=4).eval()
    with torch.no_grad():  # mid-grey output: a random net's is clipped to black, where every engine agrees
        net.conv_last.bias.fill_(0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        save_generator(net, folder / "generator.safetensors")
    export_onnx(net, folder / "model.onnx")
    (folder / "broken.onnx").write_bytes(b"not an onnx file")
    return {name: str(folder / name) for name in ("generator.safetensors", "model.onnx", "broken.onnx")}


IMAGE = np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)


def test_auto_serves_through_an_onnx_engine_with_the_torch_answers(files: dict[str, str]) -> None:
    artifacts = {"generator": files["generator.safetensors"], "onnx": files["model.onnx"]}
    fast, name = load_upscaler(artifacts)
    reference, torch_name = load_upscaler(artifacts, engine="torch")
    assert name.split()[0] in ("openvino", "onnxruntime") and torch_name == "torch fp32"
    got, want = fast(IMAGE, 256).astype(int), reference(IMAGE, 256).astype(int)
    assert got.shape == want.shape == (80, 112, 3) and want.std() > 1  # not a clipped, constant answer
    assert np.abs(got - want).max() <= 2


def test_without_a_runnable_onnx_file_auto_falls_back_to_torch(files: dict[str, str]) -> None:
    _, name = load_upscaler({"generator": files["generator.safetensors"]})  # a version without model.onnx
    assert name == "torch fp32"
    _, name = load_upscaler({"generator": files["generator.safetensors"], "onnx": files["broken.onnx"]})
    assert name == "torch fp32"
    _, name = load_upscaler({"generator": files["generator.safetensors"]}, precision="bf16")
    assert name == "torch bf16"


def test_a_pinned_engine_that_cannot_run_is_one_line(files: dict[str, str]) -> None:
    with pytest.raises(ModelLoadError) as err:
        load_upscaler({"generator": files["generator.safetensors"], "onnx": files["broken.onnx"]}, engine="openvino")
    assert "broken.onnx" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelLoadError, match="engine must be"):
        load_upscaler({"generator": files["generator.safetensors"], "onnx": files["model.onnx"]}, engine="tensorrt")
    with pytest.raises(ModelLoadError, match="precision 'int8'"):
        load_upscaler({"generator": files["generator.safetensors"]}, engine="torch", precision="int8")


def test_16_bit_requests_keep_their_depth_under_auto(files: dict[str, str]) -> None:
    """bf16 holds 8 significant bits: a 16-bit image gets an fp32 engine (as ``esrgan.upscale`` does)."""
    artifacts = {"generator": files["generator.safetensors"], "onnx": files["model.onnx"]}
    fast, _ = load_upscaler(artifacts)
    reference, _ = load_upscaler(artifacts, engine="torch")
    deep = IMAGE[:, :, 0].astype(np.uint16) * 257 + 100
    got, want = fast(deep, 256).astype(int), reference(deep, 256).astype(int)
    assert got.dtype.kind == want.dtype.kind and got.shape == want.shape == (80, 112)
    assert np.abs(got - want).max() <= 16  # 16-bit levels; bf16 would be off by hundreds
