"""RRDBNet / VGGDiscriminator architecture facts from the paper and BasicSR."""

from __future__ import annotations

import pytest
import torch

from esrgan.models import RRDBNet, VGGDiscriminator
from esrgan.models.rrdbnet import ResidualDenseBlock


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_default_generator_has_paper_parameter_count() -> None:
    assert n_params(RRDBNet()) == 16_697_987


def test_generator_has_no_batch_norm() -> None:
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in RRDBNet(num_block=2).modules())


@pytest.mark.parametrize(("scale", "first_in"), [(1, 48), (2, 12), (4, 3), (8, 3)])
def test_output_shapes_and_unshuffle_channels(scale: int, first_in: int) -> None:
    model = RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow=4)
    assert model.conv_first.in_channels == first_in
    out = model(torch.rand(2, 3, 12, 20))
    assert out.shape == (2, 3, 12 * scale, 20 * scale)


def test_unsupported_scale_is_rejected() -> None:
    with pytest.raises(ValueError, match="scale must be one of"):
        RRDBNet(scale=3)


def test_dense_block_init_is_scaled_kaiming() -> None:
    torch.manual_seed(0)
    block = ResidualDenseBlock(64, 32)
    # Kaiming normal (fan_in, gain sqrt(2)) has std sqrt(2 / fan_in); ESRGAN scales it by 0.1.
    w = block.conv1.weight
    expected = 0.1 * (2.0 / (64 * 9)) ** 0.5
    assert w.std().item() == pytest.approx(expected, rel=0.05)
    assert torch.count_nonzero(block.conv1.bias) == 0


def test_dense_block_residual_scaling() -> None:
    block = ResidualDenseBlock(8, 4)
    for conv in (block.conv1, block.conv2, block.conv3, block.conv4, block.conv5):
        torch.nn.init.zeros_(conv.weight)
    torch.nn.init.constant_(block.conv5.bias, 1.0)
    x = torch.rand(1, 8, 5, 5)
    # conv5 outputs 1 everywhere, scaled by 0.2 and added to the input.
    assert torch.allclose(block(x), x + 0.2)


def test_generator_forward_matches_the_paper_structure() -> None:
    """conv_first -> RRDBs -> conv_body + global skip -> (nearest x2, conv, lrelu) x2 -> conv_hr, lrelu -> conv_last."""
    torch.manual_seed(0)
    m = RRDBNet(num_feat=8, num_block=2, num_grow=4).eval()
    x = torch.rand(1, 3, 7, 9)
    lrelu = torch.nn.functional.leaky_relu
    up = lambda t: torch.nn.functional.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    with torch.no_grad():
        feat = m.conv_first(x)
        trunk = feat
        for rrdb in m.body:
            y = trunk
            for rdb in (rrdb.rdb1, rrdb.rdb2, rrdb.rdb3):
                x1 = lrelu(rdb.conv1(y), 0.2)
                x2 = lrelu(rdb.conv2(torch.cat((y, x1), 1)), 0.2)
                x3 = lrelu(rdb.conv3(torch.cat((y, x1, x2), 1)), 0.2)
                x4 = lrelu(rdb.conv4(torch.cat((y, x1, x2, x3), 1)), 0.2)
                y = 0.2 * rdb.conv5(torch.cat((y, x1, x2, x3, x4), 1)) + y
            trunk = 0.2 * y + trunk
        feat = feat + m.conv_body(trunk)
        feat = lrelu(m.conv_up1(up(feat)), 0.2)
        feat = lrelu(m.conv_up2(up(feat)), 0.2)
        expected = m.conv_last(lrelu(m.conv_hr(feat), 0.2))
        assert torch.allclose(m(x), expected, atol=1e-6)


@pytest.mark.parametrize("size", [128, 256])
def test_discriminator_returns_one_logit_per_image(size: int) -> None:
    disc = VGGDiscriminator(input_size=size)
    assert disc(torch.rand(3, 3, size, size)).shape == (3, 1)
    bns = [m for m in disc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == (10 if size == 128 else 12)
    assert len(bns) == len(convs) - 1  # every conv but the first
    assert convs[0].bias is not None and all(c.bias is None for c in convs[1:])
    assert disc.head[1].in_features == 512 * 4 * 4


def test_discriminator_rejects_wrong_size() -> None:
    with pytest.raises(ValueError, match="expects 128x128"):
        VGGDiscriminator()(torch.rand(1, 3, 96, 96))
