"""esrgan.upscale: tiling, odd sizes, colour modes, bit depths, precision, thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from esrgan import RRDBNet, upscale, upscale_tensor
from esrgan.inference import DEFAULT_TILE_PAD


@pytest.fixture(scope="module")
def model() -> RRDBNet:
    torch.manual_seed(0)
    m = RRDBNet(num_feat=16, num_block=3, num_grow=8).eval()
    # A small positive bias on the output keeps it away from the clamp so differences show.
    torch.nn.init.constant_(m.conv_last.bias, 0.5)
    return m


def image(h: int, w: int, c: int = 3, dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max
    smooth = rng.random((h // 4 + 2, w // 4 + 2, c))
    big = np.kron(smooth, np.ones((4, 4, 1)))[:h, :w]  # blocky structure plus noise, like a photo
    arr = (0.8 * big + 0.2 * rng.random((h, w, c))) * peak
    return arr.round().astype(dtype)


@pytest.mark.parametrize(("h", "w"), [(37, 53), (1, 1), (5, 64), (40, 40)])
def test_any_size_gives_scale_times_size(model: RRDBNet, h: int, w: int) -> None:
    out = upscale(model, image(h, w))
    assert out.shape == (4 * h, 4 * w, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("scale", [1, 2])
def test_unshuffle_models_accept_odd_sizes(scale: int) -> None:
    m = RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow=4).eval()
    for h, w in [(9, 13), (1, 3), (6, 7)]:
        assert upscale(m, image(h, w)).shape == (scale * h, scale * w, 3)
        assert upscale(m, image(h, w), tile=4, tile_pad=2).shape == (scale * h, scale * w, 3)


@pytest.mark.parametrize(("tile", "h", "w"), [(16, 45, 61), (24, 50, 23), (7, 30, 30)])
def test_tiled_equals_whole_image_at_default_padding(model: RRDBNet, tile: int, h: int, w: int) -> None:
    img = image(h, w)
    whole = upscale(model, img).astype(int)
    tiled = upscale(model, img, tile=tile).astype(int)
    assert np.abs(whole - tiled).max() <= 1
    # Without context the seams are visible: the test can fail.
    assert np.abs(whole - upscale(model, img, tile=tile, tile_pad=0).astype(int)).max() > 1


def test_tiled_equality_for_unshuffle_scale() -> None:
    torch.manual_seed(3)
    m = RRDBNet(scale=2, num_feat=8, num_block=2, num_grow=4).eval()
    img = image(33, 47)
    diff = np.abs(upscale(m, img).astype(int) - upscale(m, img, tile=10, tile_pad=DEFAULT_TILE_PAD).astype(int))
    assert diff.max() <= 1


def test_tiling_bounds_the_largest_forward_pass(model: RRDBNet) -> None:
    sizes: list[tuple[int, int]] = []
    hook = model.conv_first.register_forward_pre_hook(lambda mod, args: sizes.append(tuple(args[0].shape[-2:])))
    try:
        upscale(model, image(100, 120), tile=20, tile_pad=8)
    finally:
        hook.remove()
    assert len(sizes) == 5 * 6
    assert max(max(s) for s in sizes) <= 20 + 2 * 8


def test_greyscale_in_greyscale_out(model: RRDBNet) -> None:
    grey = image(20, 30, c=1)[:, :, 0]
    out = upscale(model, grey)
    assert out.shape == (80, 120) and out.dtype == np.uint8
    rgb = upscale(model, np.repeat(grey[:, :, None], 3, axis=2)).astype(float)
    assert np.abs(out - rgb.mean(axis=2)).max() <= 1  # mean of rounded vs rounded mean
    assert upscale(model, grey[:, :, None]).shape == (80, 120, 1)


def test_rgba_upscales_alpha_separately(model: RRDBNet) -> None:
    rgba = image(16, 24, c=4)
    out = upscale(model, rgba)
    assert out.shape == (64, 96, 4)
    assert np.array_equal(out[:, :, :3], upscale(model, rgba[:, :, :3]))
    alpha_alone = upscale(model, rgba[:, :, 3])
    assert np.array_equal(out[:, :, 3], alpha_alone)


def test_opaque_alpha_stays_opaque(model: RRDBNet) -> None:
    rgba = image(10, 10, c=4)
    rgba[:, :, 3] = 255
    assert (upscale(model, rgba)[:, :, 3] == 255).all()


def test_16_bit_keeps_its_precision(model: RRDBNet) -> None:
    img16 = image(12, 14, dtype=np.uint16)
    out16 = upscale(model, img16)
    assert out16.dtype == np.uint16 and out16.shape == (48, 56, 3)
    # Values are not confined to multiples of 257 (what an 8-bit round trip would give).
    assert np.any(out16 % 257 != 0)
    x = torch.from_numpy(img16.astype(np.float32) / 65535).permute(2, 0, 1)[None]
    expected = (upscale_tensor(model, x)[0].permute(1, 2, 0).numpy() * 65535).round()
    assert np.abs(out16.astype(float) - expected).max() <= 1


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "I;16"])
def test_pil_images_keep_their_mode(model: RRDBNet, mode: str) -> None:
    src = Image.fromarray(image(9, 11)).convert("RGBA" if mode == "LA" else "RGB")
    if mode == "I;16":
        pil = Image.fromarray(image(9, 11, c=1, dtype=np.uint16)[:, :, 0])
    elif mode == "P":
        pil = src.convert("P")
    else:
        pil = src.convert(mode)
    out = upscale(model, pil)
    assert out.size == (44, 36)
    assert out.mode == ("RGB" if mode == "P" else mode)


def test_rejects_bad_arrays(model: RRDBNet) -> None:
    with pytest.raises(ValueError, match="uint8, uint16 or floating-point"):
        upscale(model, np.zeros((4, 4, 3), np.int32))
    with pytest.raises(ValueError, match="HxWx3"):
        upscale(model, np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="precision"):
        upscale(model, image(4, 4), precision="fp8")  # type: ignore[arg-type]


def test_float_arrays_match_their_16_bit_version(model: RRDBNet) -> None:
    """Floats are 0.0 black .. 1.0 white, as a 16-bit image over 65535; the output keeps the float dtype."""
    img16 = image(12, 10, dtype=np.uint16)
    out16 = upscale(model, img16, precision="fp32")
    out = upscale(model, img16.astype(np.float32) / 65535, precision="fp32")
    assert out.dtype == np.float32 and out.shape == out16.shape
    assert np.abs(out * 65535 - out16).max() <= 0.5 + 1e-3


def test_bf16_on_cpu_is_close_to_fp32(model: RRDBNet) -> None:
    img = image(12, 12)
    diff = np.abs(upscale(model, img, precision="bf16").astype(int) - upscale(model, img).astype(int))
    assert diff.mean() < 3


def test_non_finite_reduced_precision_falls_back_to_fp32(caplog: pytest.LogCaptureFixture) -> None:
    """A model that overflows under autocast gets its tile recomputed in fp32."""

    class OverflowsInHalf(torch.nn.Module):
        scale = 1

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.is_autocast_enabled(x.device.type):
                return torch.full_like(x, float("inf"))
            return x * self.w

    img = image(6, 6)
    with caplog.at_level("WARNING"):
        out = upscale(OverflowsInHalf(), img, precision="bf16")
    assert np.array_equal(out, img)
    assert "not finite" in caplog.text


def test_concurrent_calls_give_the_same_result(model: RRDBNet) -> None:
    imgs = [image(20, 20, seed=s) for s in range(4)]
    expected = [upscale(model, im, tile=8) for im in imgs]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = upscale(model, imgs[i], tile=8)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(results[i], expected[i]) for i in range(4))
