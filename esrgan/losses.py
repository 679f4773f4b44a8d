"""ESRGAN losses: relativistic average GAN, perceptual (VGG before activation) and L1 content.

Relativistic average discriminator (ESRGAN eq. 1-3), ``C`` = the discriminator's raw logit:

    D_Ra(a, b) = sigmoid(C(a) - mean_batch C(b))
    L_D    = -E[log D_Ra(x_r, x_f)] - E[log(1 - D_Ra(x_f, x_r))]
    L_G^Ra = -E[log(1 - D_Ra(x_r, x_f))] - E[log D_Ra(x_f, x_r)]

computed as BCE-with-logits on ``C(real) - mean C(fake)`` and ``C(fake) - mean C(real)``.

**Scaling: we match BasicSR (and the authors' original code), not the paper's sum.** Each loss
is the *average* of its two terms, ``0.5 * (real term + fake term)``, so its value is half of
the paper's formula. The published weight ``lambda = 5e-3`` was tuned with this averaging, so
``w_gan = 5e-3`` here reproduces the authors' training. As in BasicSR, the side used for the
batch mean is detached in the discriminator loss (each term trains D through one side only),
and the real logits are detached in the generator loss (G cannot change them anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from esrgan.feature_extractor import VGGFeatureExtractor, build_feature_extractor


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), target))


#: How a relativistic loss averages logits over the batch: ``torch.mean`` in one process; under
#: data parallelism, a mean over every rank's logits (``esrgan.training.cross_rank.cross_rank_mean``).
BatchMean = Callable[[torch.Tensor], torch.Tensor]


def ra_discriminator_terms(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, batch_mean: BatchMean = torch.mean
) -> tuple[torch.Tensor, torch.Tensor]:
    """The discriminator's two relativistic terms, each already scaled by 0.5 (BasicSR).

    Returns ``(l_d_real, l_d_fake)`` with ``l_d_real = 0.5 * BCE(Cr - mean(Cf).detach(), 1)`` and
    ``l_d_fake = 0.5 * BCE(Cf - mean(Cr).detach(), 0)``; ``L_D = l_d_real + l_d_fake``.
    Pass ``fake_logits`` computed from a detached generator output.
    """
    l_real = 0.5 * _bce(real_logits - batch_mean(fake_logits.detach()), 1.0)
    l_fake = 0.5 * _bce(fake_logits - batch_mean(real_logits.detach()), 0.0)
    return l_real, l_fake


def ra_generator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, batch_mean: BatchMean = torch.mean
) -> torch.Tensor:
    """``L_G^Ra`` averaged over its two terms: ``0.5 * (BCE(Cr - mean Cf, 0) + BCE(Cf - mean Cr, 1))``.

    ``real_logits`` are detached; G receives gradients through both terms via ``fake_logits``.
    """
    real = real_logits.detach()
    return 0.5 * (_bce(real - batch_mean(fake_logits), 0.0) + _bce(fake_logits - batch_mean(real), 1.0))


def pixel_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """L1 content loss (mean absolute error), computed in float32."""
    return F.l1_loss(sr.float(), hr.float())


#: BT.601 chroma rows (MATLAB rgb2ycbcr's Cb and Cr, on [0, 1] RGB, scaled to [0, 1] units).
_CBCR = torch.tensor([[-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255.0


def chroma_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """L1 between the BT.601 chroma (Cb, Cr) of SR and HR, per pixel, in float32.

    Texture lives in luminance; chroma in natural photographs is smooth and fully determined by
    the LR input at its resolution. Holding chroma to HR's costs the adversarial and perceptual
    terms almost nothing, and stops the colour casts and over-saturation they otherwise buy (the
    ST-LPIPS trunk's deep features *prefer* boosted saturation, see docs/gan-stage.md). Not part
    of the paper's recipe (weight 0 there).
    """
    m = _CBCR.to(sr.device)
    return F.l1_loss(torch.einsum("kc,nchw->nkhw", m, sr.float()), torch.einsum("kc,nchw->nkhw", m, hr.float()))


class PerceptualLoss(nn.Module):
    """Weighted L1 distance between frozen VGG features (pre-activation) of SR and HR.

    Args:
        extractor: a :class:`~esrgan.feature_extractor.VGGFeatureExtractor`; built from ``backbone``
            and ``layers`` when omitted.
        layers: ``{layer name: weight}``; default ``{default layer: 1.0}`` (conv5_4 for VGG19).
        backbone: see :func:`esrgan.feature_extractor.build_feature_extractor`.
        allow_download: passed to the backbone loader.

    ``forward(sr, hr)`` returns ``sum_l w_l * L1(phi_l(sr), phi_l(hr))``, HR features detached.
    The loss's own weight in the generator objective is applied by :func:`generator_loss`.
    """

    def __init__(
        self,
        extractor: VGGFeatureExtractor | None = None,
        layers: Mapping[str, float] | None = None,
        backbone: str = "vgg19-imagenet",
        allow_download: bool | None = None,
    ) -> None:
        super().__init__()
        if extractor is None:
            extractor = build_feature_extractor(backbone, list(layers) if layers else None, allow_download)
        self.extractor = extractor
        self.layer_weights = dict(layers) if layers else {name: 1.0 for name in extractor.layers}
        missing = set(self.layer_weights) - set(extractor.layers)
        if missing:
            raise ValueError(f"the extractor does not compute layer(s) {sorted(missing)}")

    @property
    def backbone(self) -> dict[str, str | None]:
        """What the feature network is (name, arch, file, sha256 prefix, pretraining)."""
        return self.extractor.backbone.as_dict()

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        sr_feats = self.extractor(sr)
        with torch.no_grad():
            hr_feats = self.extractor(hr)
        loss = sr.new_zeros((), dtype=torch.float32)
        for name, weight in self.layer_weights.items():
            loss = loss + weight * F.l1_loss(sr_feats[name].float(), hr_feats[name].float())
        return loss


def generator_loss(
    l_percep: torch.Tensor,
    l_gan: torch.Tensor,
    l_pixel: torch.Tensor,
    w_percep: float = 1.0,  # the paper's weights (section 4.1), as LossWeights' defaults
    w_gan: float = 5e-3,
    w_pixel: float = 1e-2,
    l_chroma: torch.Tensor | None = None,
    w_chroma: float = 0.0,
) -> torch.Tensor:
    """ESRGAN's generator objective ``w_percep * L_percep + w_gan * L_G^Ra + w_pixel * L_1``,
    plus ``w_chroma * L_chroma`` (:func:`chroma_loss`) when that term is given."""
    total = w_percep * l_percep + w_gan * l_gan + w_pixel * l_pixel
    if l_chroma is not None and w_chroma:
        total = total + w_chroma * l_chroma
    return total
