"""RRDBNet: the ESRGAN generator (Wang et al. 2018), in BasicSR's parameter layout.

Residual-in-Residual Dense Blocks, no batch normalisation, residual scaling 0.2 and
0.1-scaled Kaiming initialisation of the dense-block convolutions. Upsampling is nearest
neighbour x2 followed by a 3x3 convolution, once per factor of two. Scales 2 and 1 use
Real-ESRGAN's trick: pixel-unshuffle the input by 2 or 4 and run the x4 network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Negative slope of every LeakyReLU in the generator.
LRELU_SLOPE = 0.2
#: Residual scaling used inside dense blocks and around each RRDB.
RESIDUAL_SCALE = 0.2
#: Output scales the network supports (8 appears among community models).
SUPPORTED_SCALES = (1, 2, 4, 8)


def scaled_kaiming_init(modules: list[nn.Module], scale: float = 0.1) -> None:
    """Kaiming-normal init multiplied by ``scale``, zero bias: ESRGAN's "smaller initialisation"."""
    for module in modules:
        assert isinstance(module, nn.Conv2d)
        nn.init.kaiming_normal_(module.weight)
        module.weight.data.mul_(scale)
        if module.bias is not None:
            module.bias.data.zero_()


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions with a scaled residual connection."""

    def __init__(self, num_feat: int = 64, num_grow: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow, num_grow, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow, num_grow, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow, num_grow, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(LRELU_SLOPE, inplace=True)
        scaled_kaiming_init([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5: torch.Tensor = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        # In place on the fresh conv output (its backward does not need it): the same arithmetic
        # as ``x5 * 0.2 + x``, bit for bit, without allocating two more feature maps per block.
        return x5.mul_(RESIDUAL_SCALE).add_(x)


class RRDB(nn.Module):
    """Residual-in-Residual Dense Block: three dense blocks inside a scaled residual."""

    def __init__(self, num_feat: int = 64, num_grow: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.rdb3(self.rdb2(self.rdb1(x)))
        return out.mul_(RESIDUAL_SCALE).add_(x)


class RRDBNet(nn.Module):
    """The ESRGAN generator.

    Args:
        in_ch: image channels in (3 for RGB).
        out_ch: image channels out.
        scale: output / input size ratio, one of 1, 2, 4, 8.
        num_feat: trunk width (``nf``).
        num_block: number of RRDBs (``nb``).
        num_grow: dense-block growth channels (``gc``).

    Input is an ``(N, in_ch, H, W)`` float tensor in [0, 1]; output ``(N, out_ch, sH, sW)``.
    For scales 2 and 1, H and W must be multiples of 2 and 4 (``esrgan.upscale`` pads for you).
    """

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow: int = 32,
    ) -> None:
        super().__init__()
        if scale not in SUPPORTED_SCALES:
            raise ValueError(f"RRDBNet scale must be one of {SUPPORTED_SCALES}, got {scale}")
        self.in_ch, self.out_ch, self.scale = in_ch, out_ch, scale
        self.num_feat, self.num_block, self.num_grow = num_feat, num_block, num_grow
        # Scales below 4 fold space into channels first, then upsample x4.
        self.unshuffle = {1: 4, 2: 2}.get(scale, 1)
        num_up = max(scale, 4).bit_length() - 1
        self.conv_first = nn.Conv2d(in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        if num_up == 3:
            self.conv_up3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(LRELU_SLOPE, inplace=True)
        self._up_convs = [self.conv_up1, self.conv_up2] + ([self.conv_up3] if num_up == 3 else [])

    @property
    def config(self) -> dict[str, int]:
        """Constructor arguments, enough to rebuild the architecture."""
        return {
            "in_ch": self.in_ch,
            "out_ch": self.out_ch,
            "scale": self.scale,
            "num_feat": self.num_feat,
            "num_block": self.num_block,
            "num_grow": self.num_grow,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = F.pixel_unshuffle(x, self.unshuffle) if self.unshuffle > 1 else x
        feat = self.conv_first(feat)
        feat = self.conv_body(self.body(feat)).add_(feat)
        for conv in self._up_convs:
            feat = self.lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out: torch.Tensor = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out
