"""HRNetV2 for segmentation (Wang et al., TPAMI 2020): a timm HRNet backbone and the usual segmentation head.

timm provides the backbone (``features_only=True, feature_location=''`` gives the four raw branch outputs at 1/4,
1/8, 1/16, 1/32 with W, 2W, 4W, 8W channels). The head is HRNet-Semantic-Segmentation's: upsample the branches to
1/4, concatenate (15W channels: 270 for W18, 720 for W48), 1x1 conv -> BN -> ReLU -> 1x1 conv to the logits, then
bilinear upsampling to the input size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ..base import LandslideModel
from ..registry import register_model
from ._common import load_backbone_weights, pad_to_multiple

__all__ = ['HRNet', 'HRNetHead']


class HRNetHead(nn.Module):
    """HRNetV2 head: concat the upsampled branches, 1x1 conv-BN-ReLU, 1x1 conv.

    Args:
        in_channels: channels of the branches (e.g. 18, 36, 72, 144).
        num_classes: output channels (1 logit).

    Shapes: branches B x C_i x H/2^i x W/2^i (i = 0..3) -> B x num_classes x H x W (the first branch's size).
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int = 1) -> None:
        super().__init__()
        total = sum(in_channels)
        self.last_layer = nn.Sequential(
            nn.Conv2d(total, total, 1),
            nn.BatchNorm2d(total, momentum=0.1),
            nn.ReLU(inplace=True),
            nn.Conv2d(total, num_classes, 1),
        )

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Upsample the branches to the first one's size, concatenate them and classify."""
        size = features[0].shape[-2:]
        ups = [features[0]] + [F.interpolate(f, size=size, mode='bilinear', align_corners=False) for f in features[1:]]
        return self.last_layer(torch.cat(ups, dim=1))


@register_model('hrnet')
class HRNet(LandslideModel):
    """HRNetV2-W18/W48 segmentation network.

    Args:
        in_channels: input bands.
        backbone: a timm HRNet: ``'hrnet_w48'`` (default, HRNetV2-W48), ``'hrnet_w18'``, ``'hrnet_w18_small_v2'``,
            ``'hrnet_w18_small'`` (tests), ...
        backbone_weights: local path to timm's ImageNet weights for that HRNet, or ``None``. Never downloaded.

    Shapes: B x in_channels x H x W -> B x 1 x H x W logits (predicted at 1/4, upsampled bilinearly; inputs are
    padded to a multiple of 32 internally).
    """

    def __init__(
        self, in_channels: int = 3, backbone: str = 'hrnet_w48', backbone_weights: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__()
        if not backbone.startswith('hrnet'):
            raise ConfigError(f"expected a timm HRNet ('hrnet_w18', 'hrnet_w48', ...), got {backbone!r}")
        self.in_channels = in_channels
        self.encoder = timm.create_model(
            backbone,
            pretrained=False,
            features_only=True,
            feature_location='',
            out_indices=(1, 2, 3, 4),
            in_chans=3 if backbone_weights is not None else in_channels,
        )
        if backbone_weights is not None:
            load_backbone_weights(self.encoder, backbone_weights, in_channels)
        self.decoder = HRNetHead(self.encoder.feature_info.channels(), 1)

    def forward(self, image: Tensor) -> Tensor:
        """B x in_channels x H x W -> B x 1 x H x W logits."""
        x, (h, w) = pad_to_multiple(image, 32)
        out = self.decoder(self.encoder(x))
        out = F.interpolate(out, size=x.shape[-2:], mode='bilinear', align_corners=False)
        return out[..., :h, :w]
