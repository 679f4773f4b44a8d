"""esrgan.engines: every engine x precision against torch fp32, identical seams, the cache, errors,
and the torch-free import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from esrgan import RRDBNet, upscale
from esrgan.engines import (
    EngineLoadError,
    EngineUnavailable,
    ModelInfo,
    candidates,
    compile_count,
    load_engine,
    plan_tile,
    read_props,
    tile_plan,
    upscale_array,
)
from esrgan.export import export_onnx, weights_sha256

PAIRS = [("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"), ("torch", "fp32"), ("torch", "bf16")]


def tiny(scale: int = 4, seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    m = RRDBNet(num_feat=16, num_block=2, num_grow=8, scale=scale).eval()
    torch.nn.init.constant_(m.conv_last.bias, 0.5)  # away from the clamp, so differences show
    return m


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports and compiled models go to a temporary cache, not the user's ~/.cache/esrgan."""
    monkeypatch.setenv("ESRGAN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "esrgan-cache"))


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    return {scale: export_onnx(tiny(scale), folder / f"x{scale}.onnx") for scale in (1, 2, 4)}


def image(h: int, w: int, c: int = 3, dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max
    smooth = np.kron(rng.random((h // 4 + 2, w // 4 + 2, c)), np.ones((4, 4, 1)))[:h, :w]
    return ((0.8 * smooth + 0.2 * rng.random((h, w, c))) * peak).round().astype(dtype)


def engine_or_skip(source: object, name: str, precision: str):
    try:
        return load_engine(source, name, precision)
    except EngineUnavailable as exc:
        pytest.skip(str(exc))


def test_export_writes_metadata_that_onnx_reads(onnx_files: dict[int, Path]) -> None:
    import onnx

    model = onnx.load(str(onnx_files[2]))
    onnx.checker.check_model(model)  # the appended metadata_props are valid protobuf
    props = {p.key: p.value for p in model.metadata_props}
    assert props == read_props(onnx_files[2].read_bytes())
    info = ModelInfo.from_props(props)
    assert info == ModelInfo(scale=2, num_feat=16, num_block=2, num_grow=8, digest=weights_sha256(tiny(2)))
    assert info.unshuffle == 2


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize(("name", "precision"), PAIRS)
def test_every_engine_matches_torch_fp32_whole_and_tiled(
    onnx_files: dict[int, Path], scale: int, name: str, precision: str
) -> None:
    engine = engine_or_skip(onnx_files[scale], name, precision)
    assert (engine.name, engine.precision, engine.scale) == (name, precision, scale)
    img = image(21, 30)  # odd sizes: scales 1 and 2 pad to their unshuffle factor
    for tile in (0, 8):
        ref = upscale(tiny(scale), img, tile=tile, tile_pad=4, precision="fp32").astype(int)
        got = upscale_array(engine, img, tile=tile, tile_pad=4).astype(int)
        assert got.shape == (21 * scale, 30 * scale, 3)
        assert np.abs(got - ref).max() <= (1 if precision == "fp32" else 2)


@pytest.mark.parametrize(("name", "precision"), [("onnxruntime", "fp32"), ("openvino", "bf16")])
def test_tiles_cut_the_same_seams_as_torch(onnx_files: dict[int, Path], name: str, precision: str) -> None:
    """Without context, seams show; they must be the same seams as the torch path's (same plan)."""
    engine = engine_or_skip(onnx_files[4], name, precision)
    img = image(24, 24)
    whole = upscale_array(engine, img).astype(int)
    tiled = upscale_array(engine, img, tile=8, tile_pad=0).astype(int)
    ref_tiled = upscale(tiny(4), img, tile=8, tile_pad=0, precision="fp32").astype(int)
    assert np.abs(tiled - whole).max() > 10  # seams are there
    assert np.abs(tiled - ref_tiled).max() <= 2  # and where torch has them
    assert len(tile_plan(24, 24, 8, 0)) == 9


@pytest.mark.parametrize(("c", "dtype"), [(1, np.uint8), (4, np.uint8), (3, np.uint16), (2, np.uint16)])
def test_grey_alpha_and_16_bit_through_onnxruntime(onnx_files: dict[int, Path], c: int, dtype: type) -> None:
    engine = load_engine(onnx_files[4], "onnxruntime")
    img = image(9, 11, c, dtype)
    img[..., -1] = np.arange(11, dtype=dtype)[None, :] * 20  # a real (non-constant) alpha / channel
    ref = upscale(tiny(4), img, precision="fp32").astype(int)
    got = upscale_array(engine, img)
    assert got.dtype == dtype and got.shape == ref.shape
    assert np.abs(got.astype(int) - ref).max() <= 1
    grey = upscale_array(engine, img[..., 0])  # HxW
    assert grey.shape == (36, 44) and grey.dtype == dtype


def test_float_images_keep_their_dtype(onnx_files: dict[int, Path]) -> None:
    engine = load_engine(onnx_files[4], "onnxruntime")
    img = image(8, 8, 3, np.uint16).astype(np.float64) / 65535
    img[0, 0, 0] = np.nan  # read as 0, as esrgan.imageio does
    out = upscale_array(engine, img)
    assert out.dtype == np.float64 and np.isfinite(out).all() and 0.0 <= out.min() <= out.max() <= 1.0


def test_engines_expose_what_memory_planning_needs(onnx_files: dict[int, Path]) -> None:
    engine = load_engine(onnx_files[4], "onnxruntime")
    model = tiny(4)
    for h, w in ((100, 80), (600, 900)):
        assert plan_tile(engine, h, w, available=1 << 30) == plan_tile(model, h, w, available=1 << 30)
    assert plan_tile(engine, 600, 900, available=1 << 30) > 0  # tiled, as for the torch module


def test_an_export_without_metadata_still_runs(tmp_path: Path) -> None:
    """Files exported before the metadata existed: scale measured by a probe, key = the file's SHA-256."""
    import onnx

    model = onnx.load(str(export_onnx(tiny(2), tmp_path / "m.onnx")))
    del model.metadata_props[:]
    bare = model.SerializeToString()
    engine = load_engine(bare, "onnxruntime")
    assert engine.scale == 2 and engine.info.num_feat == 64  # the paper's widths: a cautious plan
    ref = upscale(tiny(2), image(10, 10), precision="fp32").astype(int)
    assert np.abs(upscale_array(engine, image(10, 10)).astype(int) - ref).max() <= 1
    with pytest.raises(EngineUnavailable, match="metadata"):
        load_engine(bare, "torch")


def test_compiled_once_per_weights_and_precision(onnx_files: dict[int, Path]) -> None:
    engine = engine_or_skip(onnx_files[4], "openvino", "fp32")
    before = compile_count("openvino")
    for h, w in ((8, 8), (13, 17), (30, 9)):  # every size: one dynamic-shape compile
        again = load_engine(onnx_files[4].read_bytes(), "openvino", "fp32")
        assert again is engine
        upscale_array(again, image(h, w))
    assert compile_count("openvino") == before
    load_engine(tiny(4), "openvino", "fp32")  # the same weights from torch: same digest, same entry
    assert compile_count("openvino") == before
    load_engine(tiny(4, seed=1), "openvino", "fp32")
    assert compile_count("openvino") == before + 1


def test_engines_serve_threads(onnx_files: dict[int, Path]) -> None:
    engine = engine_or_skip(onnx_files[4], "openvino", "fp32")
    img = image(12, 12)
    want = upscale_array(engine, img)
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(upscale_array(engine, img))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(np.array_equal(r, want) for r in results)


def test_bad_requests_are_one_line(onnx_files: dict[int, Path], tmp_path: Path) -> None:
    with pytest.raises(EngineLoadError, match="no such file"):
        load_engine(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(EngineLoadError, match=r"junk\.onnx") as info:
        load_engine(junk, "onnxruntime")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="engine must be"):
        load_engine(junk, "tensorrt")
    with pytest.raises(EngineUnavailable, match="fp32 only"):
        load_engine(onnx_files[4], "onnxruntime", "bf16")


def test_candidates_follow_the_request() -> None:
    assert candidates("torch", "auto") == [("torch", "auto")]
    assert candidates("onnxruntime", "auto") == [("onnxruntime", "fp32")]
    assert candidates("auto", "fp32")[-1] == ("torch", "fp32")
    assert ("onnxruntime", "bf16") not in candidates("auto", "bf16")
    assert candidates("auto", "auto", "cuda:0") == [("torch", "fp16")]


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_imports_and_upscales_without_torch(onnx_files: dict[int, Path], tmp_path: Path) -> None:
    img = image(9, 10, 4, np.uint16)
    np.save(tmp_path / "in.npy", img)
    np.save(tmp_path / "ref.npy", upscale(tiny(2), img, precision="fp32"))
    result = _run_python(
        f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        import numpy as np
        import esrgan
        from esrgan.engines import load_engine, upscale_array
        engine = load_engine({str(onnx_files[2])!r}, "onnxruntime")
        out = upscale_array(engine, np.load({str(tmp_path / "in.npy")!r}), tile=4)
        ref = np.load({str(tmp_path / "ref.npy")!r})
        print(engine.name, np.abs(out.astype(int) - ref).max(), "torch" in sys.modules and sys.modules["torch"])
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    name, diff, torch_module = result.stdout.split()
    assert name == "onnxruntime" and int(diff) <= 1 and torch_module == "None"


def test_auto_skips_an_uninstalled_engine_with_one_line(onnx_files: dict[int, Path]) -> None:
    result = _run_python(
        f"""
        import logging, sys
        sys.modules["openvino"] = None  # as if not installed
        logging.basicConfig(level=logging.DEBUG, format="%(message)s")
        from esrgan.engines import load_engine
        print(load_engine({str(onnx_files[4])!r}).name)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    skipped = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert skipped and all("openvino is not installed (pip install openvino)" in line for line in skipped)
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() in ("torch", "onnxruntime")


def test_openvino_keeps_compiled_models_on_disk(onnx_files: dict[int, Path], tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    code = f"""
        from esrgan.engines import load_engine
        load_engine({str(onnx_files[1])!r}, "openvino", "fp32")
        """
    assert _run_python(code, ESRGAN_CACHE_DIR=str(tmp_path)).returncode == 0
    blobs = list((tmp_path / "openvino").glob("*.blob"))
    assert len(blobs) == 1
    assert _run_python(code, ESRGAN_CACHE_DIR=str(tmp_path)).returncode == 0
    assert list((tmp_path / "openvino").glob("*.blob")) == blobs  # the second process reused it


def test_exports_of_torch_models_are_kept_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from esrgan.engines import loader

    monkeypatch.setenv("ESRGAN_CACHE_DIR", str(tmp_path))
    model = tiny(4, seed=7)
    load_engine(model, "onnxruntime")
    (cached,) = (tmp_path / "onnx").glob("*.onnx")
    assert cached.name == f"{weights_sha256(model)}.onnx"
    stamp = cached.stat().st_mtime_ns
    loader._exports.clear()
    loader.clear_cache()
    engine = load_engine(model, "onnxruntime")  # read back, not exported again (which would rewrite it)
    assert cached.stat().st_mtime_ns == stamp
    ref = upscale(model, image(8, 8), precision="fp32").astype(int)
    assert np.abs(upscale_array(engine, image(8, 8)).astype(int) - ref).max() <= 1
    cached.write_bytes(b"\xff" * 10)  # damaged: exported again
    loader._exports.clear()
    loader.clear_cache()
    load_engine(model, "onnxruntime")
    assert read_props(cached.read_bytes())["esrgan.weights_sha256"] == weights_sha256(model)


def test_a_module_changed_in_place_is_not_served_from_the_cache() -> None:
    model = tiny(4, seed=3)
    first = load_engine(model, "onnxruntime")
    assert load_engine(model, "onnxruntime") is first  # unchanged weights: hashed once, same engine
    with torch.no_grad():
        model.conv_last.bias.add_(0.1)  # e.g. a training step between two validations
    second = load_engine(model, "onnxruntime")
    assert second is not first and second.info.digest == weights_sha256(model)
    ref = upscale(model, image(8, 8), precision="fp32").astype(int)
    assert np.abs(upscale_array(second, image(8, 8)).astype(int) - ref).max() <= 1


def test_auto_keeps_deep_images_in_fp32_on_the_cpu(onnx_files: dict[int, Path]) -> None:
    from esrgan.engines import precision_for

    assert precision_for(np.uint8) == "auto"
    assert precision_for(np.uint16) == precision_for(np.float32) == "fp32"
    assert precision_for(np.uint16, "bf16") == "bf16"  # asked for by name: as asked
    assert precision_for(np.uint16, "auto", "cuda:0") == "auto"
    img = image(10, 12, 3, np.uint16)
    ref = upscale(tiny(4), img, precision="fp32").astype(int)
    got = upscale(tiny(4), img, engine="auto").astype(int)  # not bf16: within 2 of 65535 levels
    assert np.abs(got - ref).max() <= 2
