"""DeepLabv3+ (Chen et al., ECCV 2018) from segmentation-models-pytorch.

The authors' README points to yassouali/pytorch_segmentation's ``deeplabv3_plus.py``, whose ResNet option is a
dilated ResNet-101 at output stride 16 with an ASPP (rates 6/12/18) and a 48-channel low-level skip at 1/4. smp's
``DeepLabV3Plus`` is the same design (its ASPP uses separable convs and rates 12/24/36 by default; we set the paper's
6/12/18 and plain convs). The BatchNorm of ASPP's image-pooling branch uses its running statistics when it trains on a
batch of one (PyTorch refuses batch statistics over one value per channel), as in SAM-CFFNet's ASPP.
"""

from __future__ import annotations

import os

import segmentation_models_pytorch as smp
from segmentation_models_pytorch.decoders.deeplabv3.decoder import ASPPPooling
from torch import Tensor, nn

from ..base import LandslideModel
from ..decoders.psp import PooledBatchNorm2d
from ..registry import register_model
from ._common import load_backbone_weights, pad_to_multiple

__all__ = ['DeepLabV3Plus']


def _batch_one_safe_pooling(net: nn.Module) -> None:
    """Let the ASPP image-pooling BatchNorm train with a batch of one (it sees one value per channel there)."""
    for module in net.modules():
        if isinstance(module, ASPPPooling):
            for i, layer in enumerate(module):
                if type(layer) is nn.BatchNorm2d:
                    safe = PooledBatchNorm2d(layer.num_features, layer.eps, layer.momentum)
                    safe.load_state_dict(layer.state_dict())
                    module[i] = safe


@register_model('deeplabv3plus')
class DeepLabV3Plus(LandslideModel):
    """DeepLabv3+ with a ResNet (or any smp) encoder.

    Args:
        in_channels: input bands.
        backbone: smp encoder name (default ``'resnet101'`` as in the code the authors cite; ``'resnet18'`` for tests).
        backbone_weights: local path to ImageNet weights for the encoder (torchvision/timm/smp ResNet files), or
            ``None`` for a random init. Never downloaded.
        output_stride: encoder output stride, 16 (default) or 8.
        decoder_channels: ASPP/decoder width (256).
        atrous_rates: ASPP dilation rates (6, 12, 18 at output stride 16).
        separable: depthwise-separable ASPP convs (smp's default; the original DeepLabv3+ ResNet model uses plain).

    Shapes: B x in_channels x H x W -> B x 1 x H x W logits (inputs are padded to a multiple of 32 internally).
    """

    def __init__(
        self,
        in_channels: int = 3,
        backbone: str = 'resnet101',
        backbone_weights: str | os.PathLike[str] | None = None,
        output_stride: int = 16,
        decoder_channels: int = 256,
        atrous_rates: tuple[int, int, int] = (6, 12, 18),
        separable: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.net = smp.DeepLabV3Plus(
            encoder_name=backbone,
            encoder_weights=None,
            encoder_output_stride=output_stride,
            decoder_channels=decoder_channels,
            decoder_atrous_rates=tuple(atrous_rates),
            decoder_aspp_separable=separable,
            in_channels=3 if backbone_weights is not None else in_channels,
            classes=1,
        )
        if backbone_weights is not None:
            load_backbone_weights(self.net.encoder, backbone_weights, in_channels)
        _batch_one_safe_pooling(self.net)

    def forward(self, image: Tensor) -> Tensor:
        """B x in_channels x H x W -> B x 1 x H x W logits."""
        x, (h, w) = pad_to_multiple(image, 32)
        return self.net(x)[..., :h, :w]
