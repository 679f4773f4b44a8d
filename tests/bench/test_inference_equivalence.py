"""The benchmark's optimisations keep outputs equal, and its peers and work counts are right.

Tolerances (outputs are images in [0, 1]):

* model forward with in-place residuals vs the reference formula ``x5 * 0.2 + x``: bit-identical;
* ``upscale_tensor`` (channels_last on CPU) vs the reference NCHW forward: max |diff| <= 1e-4
  (measured ~3e-6: convolution sums accumulate in another order), i.e. at most one uint8 level
  where a value sits exactly on a rounding boundary;
* spandrel / BasicSR with our weights: bit-identical to our NCHW forward (same operations).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from esrgan.inference import upscale, upscale_tensor
from esrgan.models import RRDBNet
from esrgan.models.rrdbnet import RESIDUAL_SCALE

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import inference as bench_inference  # noqa: E402
import peers  # noqa: E402

ATOL = 1e-4


def reference_forward(model: RRDBNet, x: torch.Tensor) -> torch.Tensor:
    """RRDBNet's forward as BasicSR writes it (out-of-place residuals), on our weights."""

    def rdb(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
        lrelu = block.lrelu
        x1 = lrelu(block.conv1(h))
        x2 = lrelu(block.conv2(torch.cat((h, x1), 1)))
        x3 = lrelu(block.conv3(torch.cat((h, x1, x2), 1)))
        x4 = lrelu(block.conv4(torch.cat((h, x1, x2, x3), 1)))
        return block.conv5(torch.cat((h, x1, x2, x3, x4), 1)) * RESIDUAL_SCALE + h

    feat = model.conv_first(x)
    trunk = feat
    for rrdb in model.body:
        trunk = rdb(rrdb.rdb3, rdb(rrdb.rdb2, rdb(rrdb.rdb1, trunk))) * RESIDUAL_SCALE + trunk
    feat = feat + model.conv_body(trunk)
    for conv in model._up_convs:
        feat = model.lrelu(conv(torch.nn.functional.interpolate(feat, scale_factor=2, mode="nearest")))
    return model.conv_last(model.lrelu(model.conv_hr(feat)))


@pytest.fixture(scope="module")
def model() -> RRDBNet:
    torch.manual_seed(0)
    return RRDBNet(num_feat=32, num_block=3, num_grow=32).eval()


def test_inplace_residuals_are_bit_identical(model: RRDBNet) -> None:
    x = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        assert torch.equal(model(x), reference_forward(model, x))


def test_inplace_residuals_keep_gradients_identical(model: RRDBNet) -> None:
    x = torch.rand(1, 3, 12, 12)
    model.zero_grad()
    model(x).square().mean().backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    reference_forward(model, x).square().mean().backward()
    for got, want in zip(ours, [p.grad for p in model.parameters()], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    model.zero_grad()


@pytest.mark.parametrize("tile", [0, 16])
def test_upscale_tensor_channels_last_matches_reference(model: RRDBNet, tile: int) -> None:
    x = torch.rand(1, 3, 40, 36)
    with torch.no_grad():
        want = reference_forward(model, x).clamp(0, 1)
    got = upscale_tensor(model, x, tile=tile, tile_pad=40, precision="fp32")
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= ATOL


def test_uint8_output_within_one_level(model: RRDBNet) -> None:
    img = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float().div(255).unsqueeze(0)
    with torch.no_grad():
        want = reference_forward(model, x).clamp(0, 1)[0].mul(255).round().permute(1, 2, 0).numpy()
    got = upscale(model, img, precision="fp32")
    assert np.abs(got.astype(np.int16) - want.astype(np.int16)).max() <= 1


@pytest.mark.parametrize("loader", ["spandrel", "basicsr"])
def test_peers_hold_our_weights_exactly(model: RRDBNet, loader: str) -> None:
    try:
        peer = {"spandrel": peers.spandrel_generator, "basicsr": peers.basicsr_generator}[loader](
            model.state_dict(), **({"num_feat": 32, "num_block": 3, "num_grow_ch": 32} if loader == "basicsr" else {})
        )
    except peers.PeerUnavailable as exc:
        pytest.skip(str(exc))
    x = torch.rand(1, 3, 16, 12)
    with torch.no_grad():
        assert torch.equal(peer(x), model(x))


def test_plain_tiled_loop_matches_upscale_tensor_geometry(model: RRDBNet) -> None:
    x = torch.rand(1, 3, 30, 26)
    with torch.no_grad():
        got = bench_inference.plain_tiled(model, x, tile=12, tile_pad=8, scale=4)
    ours = upscale_tensor(model, x, tile=12, tile_pad=8, precision="fp32")
    assert float((got - ours).abs().max()) <= ATOL


@pytest.mark.parametrize(("nf", "nb", "gc", "scale"), [(64, 23, 32, 4), (16, 2, 8, 4), (16, 1, 8, 8)])
def test_analytic_multiply_adds_match_the_convolutions(nf: int, nb: int, gc: int, scale: int) -> None:
    model = RRDBNet(scale=scale, num_feat=nf, num_block=nb, num_grow=gc).eval()
    h = w = 4
    counted = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal counted
        assert isinstance(module, nn.Conv2d)
        k = module.kernel_size[0] * module.kernel_size[1]
        counted += output.numel() * module.in_channels * k // module.groups

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.rand(1, 3, h, w))
    for hook in hooks:
        hook.remove()
    assert counted == bench_inference.rrdbnet_macs_per_lr_pixel(nf, nb, gc, scale) * h * w


def test_default_network_is_17_9_m_multiply_adds_per_pixel() -> None:
    assert bench_inference.rrdbnet_macs_per_lr_pixel() == 17_926_848
