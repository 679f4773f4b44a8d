"""Network interpolation theta = (1 - alpha) * theta_PSNR + alpha * theta_GAN."""

from __future__ import annotations

import pytest
import torch

from esrgan.models import RRDBNet, interpolate


def states() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    a = RRDBNet(num_feat=8, num_block=1, num_grow=4).state_dict()
    b = RRDBNet(num_feat=8, num_block=1, num_grow=4).state_dict()
    return a, b


def test_endpoints_are_exact() -> None:
    a, b = states()
    for key in a:
        assert torch.equal(interpolate(a, b, 0.0)[key], a[key])
        assert torch.equal(interpolate(a, b, 1.0)[key], b[key])


def test_midpoint_is_the_mean() -> None:
    a, b = states()
    mid = interpolate(a, b, 0.5)
    for key in a:
        assert torch.allclose(mid[key], (a[key] + b[key]) / 2, atol=1e-7)


def test_alpha_weights_the_gan_model() -> None:
    a = {"w": torch.tensor([0.0, 10.0])}
    b = {"w": torch.tensor([1.0, 20.0])}
    assert torch.allclose(interpolate(a, b, 0.2)["w"], torch.tensor([0.2, 12.0]))


def test_inputs_are_not_modified() -> None:
    a, b = states()
    copy = {k: v.clone() for k, v in a.items()}
    interpolate(a, b, 0.3)["conv_first.weight"].add_(1)
    assert all(torch.equal(a[k], copy[k]) for k in a)


def test_mismatched_keys_and_shapes_are_clear_errors() -> None:
    a, b = states()
    with pytest.raises(ValueError, match="different keys"):
        interpolate(a, {k: v for k, v in b.items() if k != "conv_last.bias"}, 0.5)
    c = RRDBNet(num_feat=16, num_block=1, num_grow=4).state_dict()
    with pytest.raises(ValueError, match="shapes"):
        interpolate(a, c, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        interpolate(a, b, 1.5)
