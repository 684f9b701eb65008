"""ASPP head (DeepLabv3, Chen et al. 2017): atrous spatial pyramid pooling + 3x3 conv + classifier (Model III).

Data flow (input C channels, output stride 16 rates)::

    x  B x C x h x w
    ASPP: 1x1 | 3x3 d6 | 3x3 d12 | 3x3 d18 | global pool + 1x1 (each conv -> BN -> ReLU), cat 5 x channels,
          1x1 -> BN -> ReLU                                  B x channels x h x w
    3x3 conv -> BN -> ReLU -> Dropout2d(0.1) -> 1x1 conv     -> logits B x 1 x h x w

The ASPP block is SAM-CFFNet's own (:class:`sam_cffnet.models.decoders.cffd.ASPP`, the DeepLabv3+ naming that the
reference's Bottle-ASPP uses), so Model III differs from SAM-CFFNet's merge only in what surrounds it.
"""

from __future__ import annotations

from torch import Tensor, nn

from .cffd import ASPP
from .psp import conv_bn_relu

__all__ = ['ASPPHead']


class ASPPHead(nn.Module):
    """DeepLabv3 head.

    Args:
        in_channels: input width C.
        channels: ASPP / head width.
        rate: multiplier of the dilations 6/12/18 (1 at output stride 16, 2 at 8).
        dropout: dropout before the classifier.
        num_classes: output channels (1 logit).

    Shapes: B x C x h x w -> B x num_classes x h x w.
    """

    def __init__(
        self, in_channels: int = 256, channels: int = 256, rate: int = 1, dropout: float = 0.1, num_classes: int = 1
    ) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, channels, rate)
        self.bottleneck = conv_bn_relu(channels, channels, 3)
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Apply ASPP, the bottleneck and the classifier."""
        return self.classifier(self.bottleneck(self.aspp(x)))
