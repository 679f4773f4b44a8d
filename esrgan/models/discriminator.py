"""The VGG-style discriminator of ESRGAN (BasicSR's ``VGGStyleDiscriminator``).

Ten convolutions in five stages; each stage halves the resolution with a 4x4 stride-2
convolution. Every convolution after the first is followed by batch normalisation (and so
has no bias). The head flattens ``512 x 4 x 4`` features into two linear layers and returns
one raw logit per image, which the relativistic losses consume.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from esrgan.models.rrdbnet import LRELU_SLOPE

#: Input sizes the discriminator accepts (the head needs exactly 4x4 features).
SUPPORTED_INPUT_SIZES = (128, 256)


class VGGDiscriminator(nn.Module):
    """VGG-style discriminator for ``input_size`` x ``input_size`` RGB patches.

    Args:
        input_size: 128 (the paper's HR patch) or 256 (an extra stage).
        in_ch: image channels.
        num_feat: channels of the first stage (64 in the paper).
    """

    def __init__(self, input_size: int = 128, in_ch: int = 3, num_feat: int = 64) -> None:
        super().__init__()
        if input_size not in SUPPORTED_INPUT_SIZES:
            raise ValueError(f"VGGDiscriminator input_size must be one of {SUPPORTED_INPUT_SIZES}, got {input_size}")
        self.input_size = input_size
        widths = [num_feat, num_feat * 2, num_feat * 4, num_feat * 8, num_feat * 8]
        if input_size == 256:
            widths.append(num_feat * 8)
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, widths[0], 3, 1, 1, bias=True),
            nn.LeakyReLU(LRELU_SLOPE, inplace=True),
            *self._conv_bn(widths[0], widths[0], stride=2),
        ]
        for prev, width in itertools.pairwise(widths):
            layers += self._conv_bn(prev, width, stride=1)
            layers += self._conv_bn(width, width, stride=2)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(widths[-1] * 4 * 4, 100),
            nn.LeakyReLU(LRELU_SLOPE, inplace=True),
            nn.Linear(100, 1),
        )

    @staticmethod
    def _conv_bn(in_ch: int, out_ch: int, stride: int) -> list[nn.Module]:
        kernel = 3 if stride == 1 else 4
        return [
            nn.Conv2d(in_ch, out_ch, kernel, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch, affine=True),
            nn.LeakyReLU(LRELU_SLOPE, inplace=True),
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return one logit per image, shape ``(N, 1)``."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"VGGDiscriminator expects {self.input_size}x{self.input_size} inputs, got {tuple(x.shape[-2:])}"
            )
        logits: torch.Tensor = self.head(self.features(x))
        return logits
