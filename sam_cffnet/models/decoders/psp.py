"""PSP head (Zhao et al., CVPR 2017): pyramid pooling module + 3x3 bottleneck + classifier (Model II of the paper).

Data flow (input C channels, ``len(bins)`` = 4)::

    x  B x C x h x w
    for each bin b in (1, 2, 3, 6): adaptive avg pool to b x b -> 1x1 conv C -> C/4 -> BN -> ReLU -> bilinear to h x w
    cat [x, 4 pooled maps]           B x 2C x h x w
    3x3 conv -> BN -> ReLU -> Dropout2d(0.1) -> 1x1 conv     -> logits B x 1 x h x w
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['PSPHead', 'PooledBatchNorm2d', 'PyramidPooling']


class PooledBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm for globally pooled maps that also trains with a batch of one.

    PyTorch refuses batch statistics over a single value per channel (a B = 1 batch of 1 x 1 maps); the normal
    BatchNorm is used otherwise, and in that one case the running statistics are used instead (the same rule as
    :class:`sam_cffnet.models.decoders.cffd.ASPP`).
    """

    def forward(self, x: Tensor) -> Tensor:
        """Batch-normalize ``x``; a single value per channel in training is normalized with the running statistics."""
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 1, pooled: bool = False) -> nn.Sequential:
    """Conv (no bias) -> BN -> ReLU; ``pooled`` uses :class:`PooledBatchNorm2d`."""
    bn = PooledBatchNorm2d if pooled else nn.BatchNorm2d
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        bn(out_channels),
        nn.ReLU(inplace=True),
    )


class PyramidPooling(nn.Module):
    """Pyramid pooling module: the input concatenated with its pooled-and-upsampled context at several bin sizes.

    Args:
        in_channels: C.
        bins: output sizes of the adaptive average pooling.
        branch_channels: width of each pooled branch (default C / len(bins)).

    Shapes: B x C x h x w -> B x (C + len(bins) * branch_channels) x h x w.
    """

    def __init__(self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6), branch_channels: int | None = None):
        super().__init__()
        branch_channels = branch_channels or in_channels // len(bins)
        self.bins = tuple(bins)
        self.stages = nn.ModuleList(conv_bn_relu(in_channels, branch_channels, 1, pooled=True) for _ in self.bins)
        self.out_channels = in_channels + len(self.bins) * branch_channels

    def forward(self, x: Tensor) -> Tensor:
        """Concatenate ``x`` with its context pooled at each bin size and upsampled back."""
        size = x.shape[-2:]
        pooled = [
            F.interpolate(stage(F.adaptive_avg_pool2d(x, b)), size=size, mode='bilinear', align_corners=False)
            for b, stage in zip(self.bins, self.stages)
        ]
        return torch.cat([x, *pooled], dim=1)


class PSPHead(nn.Module):
    """PSPNet head.

    Args:
        in_channels: input width C.
        channels: bottleneck width.
        bins: pyramid bins (PSPNet: 1, 2, 3, 6).
        dropout: dropout before the classifier (PSPNet: 0.1).
        num_classes: output channels (1 logit).

    Shapes: B x C x h x w -> B x num_classes x h x w.
    """

    def __init__(
        self,
        in_channels: int = 256,
        channels: int = 256,
        bins: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        num_classes: int = 1,
    ) -> None:
        super().__init__()
        self.ppm = PyramidPooling(in_channels, bins)
        self.bottleneck = conv_bn_relu(self.ppm.out_channels, channels, 3)
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Apply pyramid pooling, the bottleneck and the classifier."""
        return self.classifier(self.bottleneck(self.ppm(x)))
