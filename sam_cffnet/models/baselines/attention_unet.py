"""Attention U-Net (Oktay et al., MIDL 2018): a U-Net whose skip connections pass through additive attention gates.

No library provides it; this follows the widely used PyTorch version (LeeJunHyun/Image_Segmentation ``AttU_Net``,
which the EdgarLefevre/Attention_Unet_Pytorch code cited by the SAM-CFFNet authors mirrors):

* encoder: 5 levels of (3x3 conv -> BN -> ReLU) x 2, widths w, 2w, 4w, 8w, 16w (w = 64), 2x2 max pooling between;
* decoder level l: nearest x2 upsampling -> 3x3 conv -> BN -> ReLU (the gating signal g), attention gate
  ``x_l * sigmoid(BN(psi(ReLU(W_g g + W_x x_l))))`` on the skip x_l (intermediate width = half the level width),
  concat [gated skip, g], (3x3 conv -> BN -> ReLU) x 2;
* a 1x1 conv to one logit at full resolution.

The gate is :class:`sam_cffnet.models.decoders.cffd.AttentionGate` (the same block SAM-CFFNet's SFE uses).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from ..base import LandslideModel
from ..decoders.cffd import AttentionGate
from ..registry import register_model
from ._common import load_backbone_weights, pad_to_multiple

__all__ = ['AttentionUNet']


def _conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=True), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class ConvBlock(nn.Sequential):
    """(3x3 conv -> BN -> ReLU) x 2. Shapes: B x C_in x H x W -> B x C_out x H x W."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(*_conv_bn_relu(in_channels, out_channels), *_conv_bn_relu(out_channels, out_channels))


class UpStage(nn.Module):
    """One decoder level: upsample + conv (gating signal), attention gate on the skip, concat, ConvBlock.

    Shapes: deep B x 2C x H/2 x W/2, skip B x C x H x W -> B x C x H x W.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode='nearest'), *_conv_bn_relu(2 * channels, channels))
        self.gate = AttentionGate(channels, channels, channels // 2)
        self.conv = ConvBlock(2 * channels, channels)

    def forward(self, deep: Tensor, skip: Tensor) -> Tensor:
        g = self.up(deep)
        return self.conv(torch.cat([self.gate(g, skip), g], dim=1))


class UNetEncoder(nn.Module):
    """The contracting path: ConvBlocks at widths ``widths`` with 2x2 max pooling between them.

    Shapes: B x C_in x H x W -> [B x widths[i] x H/2^i x W/2^i for each level i].
    """

    def __init__(self, in_channels: int, widths: list[int]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ConvBlock(c_in, c_out) for c_in, c_out in zip([in_channels, *widths], widths))
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x: Tensor) -> list[Tensor]:
        skips = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        return skips


@register_model('attention_unet')
class AttentionUNet(LandslideModel):
    """Attention U-Net, trained from scratch.

    Args:
        in_channels: input bands.
        base_channels: width of the first level (64 in the paper; e.g. 8 for tests).
        backbone_weights: optional local path to weights for the contracting path (``encoder.*`` keys of a previous
            run, or a bare state dict of it); there are no standard ImageNet weights for this network.

    Shapes: B x in_channels x H x W -> B x 1 x H x W logits (inputs are padded to a multiple of 16 internally).
    """

    def __init__(
        self, in_channels: int = 3, base_channels: int = 64, backbone_weights: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        widths = [base_channels * 2**i for i in range(5)]
        self.encoder = UNetEncoder(in_channels, widths)
        self.decoder = nn.ModuleList(UpStage(c) for c in reversed(widths[:-1]))
        self.head = nn.Conv2d(base_channels, 1, 1)
        if backbone_weights is not None:
            load_backbone_weights(self.encoder, backbone_weights, in_channels=3, min_fraction=1.0)

    def forward(self, image: Tensor) -> Tensor:
        """B x in_channels x H x W -> B x 1 x H x W logits."""
        x, (h, w) = pad_to_multiple(image, 16)
        skips = self.encoder(x)
        x = skips.pop()
        for stage in self.decoder:
            x = stage(x, skips.pop())
        return self.head(x)[..., :h, :w]
