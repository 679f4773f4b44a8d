"""Relativistic GAN, perceptual and content losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from esrgan.feature_extractor import build_feature_extractor
from esrgan.losses import (
    PerceptualLoss,
    chroma_loss,
    generator_loss,
    pixel_loss,
    ra_discriminator_terms,
    ra_generator_loss,
)


def _softplus(x: float) -> float:
    return math.log(1.0 + math.exp(x))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


REAL = [2.0, 0.5, -1.0]
FAKE = [-0.5, 1.0]


def _expected_d() -> float:
    mr, mf = sum(REAL) / len(REAL), sum(FAKE) / len(FAKE)
    # BCE(x, 1) = -log sigmoid(x) = softplus(-x); BCE(x, 0) = softplus(x)
    real_term = sum(-math.log(_sigmoid(r - mf)) for r in REAL) / len(REAL)
    fake_term = sum(-math.log(1 - _sigmoid(f - mr)) for f in FAKE) / len(FAKE)
    return 0.5 * (real_term + fake_term)


def _expected_g() -> float:
    mr, mf = sum(REAL) / len(REAL), sum(FAKE) / len(FAKE)
    real_term = sum(_softplus(r - mf) for r in REAL) / len(REAL)
    fake_term = sum(_softplus(-(f - mr)) for f in FAKE) / len(FAKE)
    return 0.5 * (real_term + fake_term)


def test_discriminator_loss_matches_hand_computation() -> None:
    real, fake = torch.tensor(REAL).view(-1, 1), torch.tensor(FAKE).view(-1, 1)
    l_real, l_fake = ra_discriminator_terms(real, fake)
    assert (l_real + l_fake).item() == pytest.approx(_expected_d(), rel=1e-6)
    mf = sum(FAKE) / len(FAKE)
    assert l_real.item() == pytest.approx(0.5 * sum(_softplus(-(r - mf)) for r in REAL) / 3, rel=1e-6)


def test_generator_loss_matches_hand_computation() -> None:
    real, fake = torch.tensor(REAL).view(-1, 1), torch.tensor(FAKE).view(-1, 1)
    assert ra_generator_loss(real, fake).item() == pytest.approx(_expected_g(), rel=1e-6)


def test_gradients_follow_basicsr_detaching() -> None:
    real = torch.tensor(REAL).view(-1, 1).requires_grad_()
    fake = torch.tensor(FAKE).view(-1, 1).requires_grad_()
    l_real, l_fake = ra_discriminator_terms(real, fake)
    l_real.backward()
    assert fake.grad is None and real.grad is not None  # the real term trains D through real only
    real.grad = None
    l_fake.backward()
    assert real.grad is None and fake.grad is not None

    real.grad = fake.grad = None
    ra_generator_loss(real, fake).backward()
    assert real.grad is None  # D's real logits are constants for G
    # G gets gradient from both terms: d/dCf of the full expression, by hand
    mr, mf = sum(REAL) / 3, sum(FAKE) / 2
    expected = []
    for f in FAKE:
        from_real = sum(_sigmoid(r - mf) for r in REAL) / 3 * (-1 / 2)  # via mean(Cf) in the real term
        from_fake = -_sigmoid(-(f - mr)) / 2
        expected.append(0.5 * (from_real + from_fake))
    assert fake.grad.view(-1).tolist() == pytest.approx(expected, rel=1e-5)


def test_pixel_and_total_loss() -> None:
    a, b = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.25)
    assert pixel_loss(a, b).item() == pytest.approx(0.25)
    total = generator_loss(torch.tensor(2.0), torch.tensor(3.0), torch.tensor(5.0))
    assert total.item() == pytest.approx(1.0 * 2 + 5e-3 * 3 + 1e-2 * 5)
    total = generator_loss(torch.tensor(2.0), torch.tensor(3.0), torch.tensor(5.0), w_percep=0.5, w_gan=1, w_pixel=0)
    assert total.item() == pytest.approx(4.0)


def test_chroma_loss_charges_colour_but_not_luminance() -> None:
    hr = torch.rand(2, 3, 8, 8) * 0.8 + 0.1
    grey = hr + 0.05  # R = G = B shift: luminance only (BT.601 chroma rows sum to zero)
    assert chroma_loss(grey, hr).item() == pytest.approx(0.0, abs=1e-6)
    red = hr + torch.tensor([0.05, 0.0, 0.0]).view(1, 3, 1, 1)
    # MATLAB rgb2ycbcr: dCb = -37.797/255 * dR, dCr = 112/255 * dR; L1 averages both channels.
    assert chroma_loss(red, hr).item() == pytest.approx((37.797 + 112.0) / 255 * 0.05 / 2, rel=1e-5)
    # Over-saturation (chroma scaled up around the luminance) is charged, proportionally.
    y = (hr * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    sat1, sat2 = y + 1.1 * (hr - y), y + 1.2 * (hr - y)
    assert chroma_loss(sat2, hr).item() == pytest.approx(2 * chroma_loss(sat1, hr).item(), rel=1e-4)


def test_generator_loss_adds_the_chroma_term_only_when_weighted() -> None:
    p, g, px, c = (torch.tensor(v) for v in (2.0, 3.0, 5.0, 7.0))
    base = generator_loss(p, g, px).item()
    assert generator_loss(p, g, px, l_chroma=c).item() == pytest.approx(base)  # weight 0: the paper's recipe
    assert generator_loss(p, g, px, l_chroma=c, w_chroma=0.5).item() == pytest.approx(base + 3.5)


def test_perceptual_loss_is_weighted_l1_of_frozen_features() -> None:
    extractor = build_feature_extractor("random", ["conv1_2", "conv2_2"])
    loss_fn = PerceptualLoss(extractor, layers={"conv1_2": 0.5, "conv2_2": 2.0})
    torch.manual_seed(0)
    sr = torch.rand(2, 3, 16, 16, requires_grad=True)
    hr = torch.rand(2, 3, 16, 16, requires_grad=True)
    fs, fh = extractor(sr), extractor(hr)
    expected = 0.5 * F.l1_loss(fs["conv1_2"], fh["conv1_2"]) + 2.0 * F.l1_loss(fs["conv2_2"], fh["conv2_2"])
    loss = loss_fn(sr, hr)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert sr.grad is not None and hr.grad is None
    assert all(p.grad is None and not p.requires_grad for p in loss_fn.parameters())
    loss_fn.train()
    assert not loss_fn.extractor.training
    assert loss_fn.backbone["name"] == "random"


def test_perceptual_loss_rejects_layers_the_extractor_lacks() -> None:
    with pytest.raises(ValueError, match="conv5_4"):
        PerceptualLoss(build_feature_extractor("random", ["conv1_2"]), layers={"conv5_4": 1.0})
