"""SegFormer (Xie et al., NeurIPS 2021): a Mix Transformer (MiT-B0..B5) encoder with the all-MLP decoder, from smp.

The decoder width follows the SegFormer paper: 256 for MiT-B0/B1, 768 for MiT-B2..B5.
"""

from __future__ import annotations

import os

import segmentation_models_pytorch as smp
from torch import Tensor

from ...errors import ConfigError
from ..base import LandslideModel
from ..registry import register_model
from ._common import load_backbone_weights, pad_to_multiple

__all__ = ['SegFormer']

#: MiT variant -> all-MLP decoder width in the SegFormer paper.
DECODER_WIDTH = {'mit_b0': 256, 'mit_b1': 256, 'mit_b2': 768, 'mit_b3': 768, 'mit_b4': 768, 'mit_b5': 768}


@register_model('segformer')
class SegFormer(LandslideModel):
    """SegFormer with a MiT encoder.

    Args:
        in_channels: input bands.
        backbone: ``'mit_b0'`` .. ``'mit_b5'`` (default ``'mit_b2'``; the paper does not say which it used).
        backbone_weights: local path to the ImageNet MiT weights (NVlabs ``mit_b*.pth`` or smp's), or ``None``.
        decoder_channels: all-MLP decoder width; ``None`` = the SegFormer paper's (256 for B0/B1, 768 otherwise).

    Shapes: B x in_channels x H x W -> B x 1 x H x W logits (the head predicts at 1/4 and upsamples bilinearly;
    inputs are padded to a multiple of 32 internally).
    """

    def __init__(
        self,
        in_channels: int = 3,
        backbone: str = 'mit_b2',
        backbone_weights: str | os.PathLike[str] | None = None,
        decoder_channels: int | None = None,
    ) -> None:
        super().__init__()
        if not backbone.startswith('mit_b'):
            raise ConfigError(f"SegFormer takes a Mix Transformer encoder 'mit_b0' .. 'mit_b5', got {backbone!r}")
        self.in_channels = in_channels
        self.net = smp.Segformer(
            encoder_name=backbone,
            encoder_weights=None,
            decoder_segmentation_channels=decoder_channels or DECODER_WIDTH.get(backbone, 256),
            in_channels=3 if backbone_weights is not None else in_channels,
            classes=1,
        )
        if backbone_weights is not None:
            load_backbone_weights(self.net.encoder, backbone_weights, in_channels)

    def forward(self, image: Tensor) -> Tensor:
        """B x in_channels x H x W -> B x 1 x H x W logits."""
        x, (h, w) = pad_to_multiple(image, 32)
        return self.net(x)[..., :h, :w]
