"""The comparison models of the SAM-CFFNet paper, trained from scratch or from local ImageNet weights.

==================  =============================================================  ============================
registered name     architecture                                                   library
==================  =============================================================  ============================
``attention_unet``  Attention U-Net (Oktay et al. 2018), additive gates on skips    written here
``deeplabv3plus``   DeepLabv3+ (Chen et al. 2018), ResNet encoder, OS 16            segmentation-models-pytorch
``hrnet``           HRNetV2 (Wang et al. 2020) + concat/1x1 segmentation head       timm backbone, head here
``segformer``       SegFormer (Xie et al. 2021), MiT-B* encoder, all-MLP head        segmentation-models-pytorch
==================  =============================================================  ============================

Every baseline takes ``in_channels`` and ``backbone_weights`` (a *local* path to ImageNet weights for the encoder, or
``None`` for a random init; nothing is ever downloaded) and maps B x in_channels x H x W to B x 1 x H x W logits.
"""

from .attention_unet import AttentionUNet
from .deeplabv3plus import DeepLabV3Plus
from .hrnet import HRNet, HRNetHead
from .segformer import SegFormer

__all__ = ['AttentionUNet', 'DeepLabV3Plus', 'HRNet', 'HRNetHead', 'SegFormer']
