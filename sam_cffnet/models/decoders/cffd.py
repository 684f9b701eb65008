"""CFFD: the cross-feature fusion decoder of SAM-CFFNet (Xi et al., Remote Sensing 2024, 16(13), 2334).

Built exactly as the authors' effective code (second copy of ``model/SAM_CFFNet.py``): same shapes, norms,
activations, upsampling modes and ``align_corners`` choices. See ``reference_sam_cffnet.md`` section 3.

Data flow for the reference configuration (ViT-L, encoder input S = 1024, 256 px tile)::

    f0..f3  B x 1024 x 64 x 64      (SAM blocks 5/11/17/23)
    CFFM:   FAM(f_i)                -> B x 256 x 64 x 64 each (one FAM shared by the 4 levels by default)
            3 FCFS stages           -> 4 maps B x 256 x 64 x 64 (one EPSA block shared per stage by default)
    merge:  cat -> 1x1 1024->256 -> bottleneck ASPP     -> B x 256 x 64 x 64
            bilinear x2 (align_corners=True)            -> d  B x 256 x 128 x 128
    SFE:    strided 1x1 convs on the S x S image, 3 EPSA, attention gate with d -> s  B x 64 x 128 x 128
    head:   cat[d, s] -> 1x1 320->256 -> BN -> ReLU -> 1x1 256->1 -> B x 1 x 128 x 128
            bilinear x2 (align_corners=True)            -> logits B x 1 x 256 x 256  (= S / 4)

Our state-dict names differ from the reference's (``decoder.cdffm.MLP_1.0`` -> ``decoder.cffm.fam.0.mlp1``, ...);
:mod:`sam_cffnet.models.reference` holds the one mapping.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d, MLPBlock
from torch import Tensor, nn

from ...errors import ConfigError

__all__ = ['ASPP', 'CFFD', 'CFFM', 'FAM', 'SFE', 'AttentionGate', 'BottleneckASPP', 'EPSABlock', 'PSAModule']


def _conv(in_ch: int, out_ch: int, kernel: int, padding: int = 0, groups: int = 1, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, groups=groups, bias=False)


class SEWeightModule(nn.Module):
    """Squeeze-and-excitation weights: B x C x H x W -> B x C x 1 x 1 in (0, 1)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(x, 1)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x))))


class PSAModule(nn.Module):
    """Pyramid split attention (EPSANet): four grouped convs (k 3/5/7/9), one shared SE, softmax across branches.

    The output concatenates the branches in **reversed** order ``[b4, b3, b2, b1]``, as EPSANet's code (and the
    released weights) do.

    Shapes: B x C_in x H x W -> B x C_out x H x W, with C_out divisible by 4 and C_out / 4 divisible by 16.
    """

    kernels = (3, 5, 7, 9)
    groups = (1, 4, 8, 16)

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        split = out_channels // 4
        self.split = split
        self.conv_1, self.conv_2, self.conv_3, self.conv_4 = (
            _conv(in_channels, split, k, padding=k // 2, groups=g) for k, g in zip(self.kernels, self.groups)
        )
        self.se = SEWeightModule(split)

    def forward(self, x: Tensor) -> Tensor:
        """Weight the four branches by their SE weights (softmax across branches) and concatenate them in reverse."""
        b = x.shape[0]
        branches = [self.conv_1(x), self.conv_2(x), self.conv_3(x), self.conv_4(x)]
        feats = torch.stack(branches, dim=1)  # B x 4 x S x H x W
        weights = torch.stack([self.se(t) for t in branches], dim=1).softmax(dim=1)  # B x 4 x S x 1 x 1
        weighted = feats * weights
        out = torch.cat([weighted[:, i] for i in (3, 2, 1, 0)], dim=1)
        return out.view(b, 4 * self.split, *x.shape[-2:])


class EPSABlock(nn.Module):
    """EPSANet bottleneck: 1x1 -> BN -> ReLU -> PSA -> BN -> ReLU -> 1x1 -> BN -> + identity -> ReLU.

    Shapes: B x C x H x W -> B x C x H x W (``inplanes`` must equal ``planes``: there is no downsample branch).
    """

    def __init__(self, inplanes: int, planes: int) -> None:
        super().__init__()
        if inplanes != planes:
            raise ValueError('EPSABlock has no downsample branch: inplanes must equal planes')
        self.conv1 = _conv(inplanes, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = PSAModule(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes, 1)
        self.bn3 = nn.BatchNorm2d(planes)

    def forward(self, x: Tensor) -> Tensor:
        """Run the bottleneck and add the identity."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + x)


class FAM(nn.Module):
    """Feature adapter: two residual MLPs on the tokens, then a SAM-style neck (a new, randomly initialised one).

    Shapes: B x C_in x h x w -> B x C_out x h x w.
    """

    def __init__(self, in_channels: int = 1024, mlp_dim: int = 256, out_channels: int = 256) -> None:
        super().__init__()
        self.mlp1 = MLPBlock(in_channels, mlp_dim)
        self.mlp2 = MLPBlock(in_channels, mlp_dim)
        self.neck = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            LayerNorm2d(out_channels),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the two residual MLPs on the tokens, then the neck."""
        x = x.permute(0, 2, 3, 1)
        x = x + self.mlp1(x)
        x = x + self.mlp2(x)
        return self.neck(x.permute(0, 3, 1, 2))


class CFFM(nn.Module):
    """Cross-feature fusion module: FAM per level, then three FCFS stages.

    FCFS stage k maps (a0, a1, a2, a3) to ``(E(a0+a1+a2), E(a0+a1+a3), E(a0+a2+a3), E(a1+a2+a3))`` with one EPSA
    block E per stage.

    Args:
        in_channels: encoder width C.
        channels: fused width (reference 256).
        num_levels: number of feature levels (4).
        shared: share one FAM across levels and one EPSA block across the branches of a stage (the reference;
            4,258,723 trainable parameters with ViT-L). ``False`` gives each level/branch its own weights.

    Shapes: 4 x (B x C x h x w) -> 4 x (B x channels x h x w).
    """

    def __init__(self, in_channels: int = 1024, channels: int = 256, num_levels: int = 4, shared: bool = True) -> None:
        super().__init__()
        if num_levels != 4:
            raise ValueError('CFFM fuses exactly 4 feature levels')
        copies = 1 if shared else num_levels
        self.shared = shared
        self.fam = nn.ModuleList(FAM(in_channels, 256, channels) for _ in range(copies))
        self.fusion = nn.ModuleList(
            nn.ModuleList(EPSABlock(channels, channels) for _ in range(copies)) for _ in range(3)
        )

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Adapt each of the four levels (FAM), then fuse them through the FCFS stages."""
        if len(features) != 4:
            raise ValueError(f'CFFM expects 4 feature levels, got {len(features)}')
        a = [self.fam[i if len(self.fam) > 1 else 0](f) for i, f in enumerate(features)]
        for stage in self.fusion:
            e = [stage[i if len(stage) > 1 else 0] for i in range(4)]
            a = [e[0](a[0] + a[1] + a[2]), e[1](a[0] + a[1] + a[3]), e[2](a[0] + a[2] + a[3]), e[3](a[1] + a[2] + a[3])]
        return a


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = 0 if kernel == 1 else dilation
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=pad, dilation=dilation, bias=True),
        nn.BatchNorm2d(out_ch, momentum=0.1),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """DeepLab ASPP: 1x1, 3x3 at dilations 6/12/18, global pooling; concat; 1x1.

    The pooled branch's BatchNorm sees one value per channel and sample, so PyTorch refuses it in training with a
    batch of one (the reference crashes there). With a training batch of one, that BatchNorm uses its running
    statistics; with larger batches it behaves exactly as the reference.

    Shapes: B x C_in x H x W -> B x C_out x H x W.
    """

    def __init__(self, in_channels: int, out_channels: int, rate: int = 1) -> None:
        super().__init__()
        self.branch1 = _conv_bn_relu(in_channels, out_channels, 1)
        self.branch2 = _conv_bn_relu(in_channels, out_channels, 3, 6 * rate)
        self.branch3 = _conv_bn_relu(in_channels, out_channels, 3, 12 * rate)
        self.branch4 = _conv_bn_relu(in_channels, out_channels, 3, 18 * rate)
        self.branch5_conv = nn.Conv2d(in_channels, out_channels, 1, bias=True)
        self.branch5_bn = nn.BatchNorm2d(out_channels, momentum=0.1)
        self.conv_cat = _conv_bn_relu(out_channels * 5, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Concatenate the four convolution branches and the pooled branch, then project them (1x1)."""
        h, w = x.shape[-2:]
        pooled = self.branch5_conv(x.mean(dim=(2, 3), keepdim=True))
        bn = self.branch5_bn
        if self.training and pooled.shape[0] == 1:
            pooled = F.batch_norm(pooled, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        else:
            pooled = bn(pooled)
        pooled = F.interpolate(F.relu(pooled), size=(h, w), mode='bilinear', align_corners=True)
        out = torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x), pooled], dim=1)
        return self.conv_cat(out)


class BottleneckASPP(nn.Module):
    """1x1 reduce -> BN -> ReLU -> ASPP -> 1x1 expand -> BN -> ReLU, then + identity (no activation after the add).

    Shapes: B x C x H x W -> B x C x H x W.
    """

    def __init__(self, channels: int = 256, mid_channels: int = 64) -> None:
        super().__init__()
        self.conv1 = _conv(channels, mid_channels, 1)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.aspp = ASPP(mid_channels, mid_channels)
        self.conv2 = _conv(mid_channels, channels, 1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        """Reduce, apply ASPP, expand, and add the identity."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.aspp(out)
        out = F.relu(self.bn2(self.conv2(out)))
        return out + x


class AttentionGate(nn.Module):
    """Attention U-Net gate (Oktay et al.): ``x * sigmoid(BN(psi(ReLU(W_g g + W_x x))))``.

    Shapes: g B x C_g x H x W, x B x C_x x H x W -> B x C_x x H x W.
    """

    def __init__(self, gate_channels: int, in_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.g_proj = nn.Sequential(
            nn.Conv2d(gate_channels, inter_channels, 1, bias=True), nn.BatchNorm2d(inter_channels)
        )
        self.x_proj = nn.Sequential(
            nn.Conv2d(in_channels, inter_channels, 1, bias=True), nn.BatchNorm2d(inter_channels)
        )
        self.psi = nn.Sequential(nn.Conv2d(inter_channels, 1, 1, bias=True), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, g: Tensor, x: Tensor) -> Tensor:
        """Gate ``x`` by attention weights computed from ``g`` and ``x``."""
        psi = self.psi(F.relu(self.g_proj(g) + self.x_proj(x)))
        return x * psi


class SFE(nn.Module):
    """Shallow feature extractor on the encoder-size image.

    Three strided 1x1 convs (no norm, no activation between them: one linear map sampling every 8th pixel), three
    EPSA blocks, then an attention gate driven by the deep map.

    Shapes: image B x 3 x S x S, deep B x C x S/8 x S/8 -> B x 64 x S/8 x S/8.
    """

    def __init__(self, image_channels: int = 3, deep_channels: int = 256, channels: int = 64) -> None:
        super().__init__()
        self.down = nn.Sequential(
            _conv(image_channels, channels, 1, stride=2),
            _conv(channels, channels, 1, stride=2),
            _conv(channels, channels, 1, stride=2),
            EPSABlock(channels, channels),
            EPSABlock(channels, channels),
            EPSABlock(channels, channels),
        )
        self.gate = AttentionGate(deep_channels, channels, channels)

    def forward(self, image: Tensor, deep: Tensor) -> Tensor:
        """Extract shallow features from ``image`` and gate them with the deep features."""
        shallow = self.down(image)
        return self.gate(deep, shallow)


class CFFD(nn.Module):
    """The complete CFFD decoder.

    Args:
        in_channels: encoder width C (ViT-L 1024).
        channels: fused width (256; a multiple of 64).
        shallow_channels: SFE width (64).
        shared: weight sharing in CFFM (see :class:`CFFM`); the reference shares.

    Shapes:
        features: 4 x (B x C x h x w); image: B x 3 x 16h x 16w -> logits B x 1 x 4h x 4w.
    """

    def __init__(self, in_channels: int = 1024, channels: int = 256, shallow_channels: int = 64, shared: bool = True):
        super().__init__()
        if channels % 64:
            raise ConfigError(f'channels must be a multiple of 64 (EPSA groups), got {channels}')
        self.cffm = CFFM(in_channels, channels, 4, shared)
        self.merge = nn.Sequential(nn.Conv2d(4 * channels, channels, 1, bias=True), BottleneckASPP(channels, 64))
        self.sfe = SFE(3, channels, shallow_channels)
        self.head = nn.Sequential(
            nn.Conv2d(channels + shallow_channels, channels, 1, bias=True),
            nn.BatchNorm2d(channels, momentum=0.1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, 1, 1, bias=True),
        )

    def forward(self, features: Sequence[Tensor], image: Tensor) -> Tensor:
        """Fuse the features, add the gated shallow features of ``image``, predict logits at 4x the features' size."""
        fused = self.cffm(features)
        deep = self.merge(torch.cat(fused, dim=1))
        h, w = deep.shape[-2:]
        deep = F.interpolate(deep, size=(2 * h, 2 * w), mode='bilinear', align_corners=True)
        shallow = self.sfe(image, deep)
        out = self.head(torch.cat([deep, shallow], dim=1))
        return F.interpolate(out, scale_factor=2, mode='bilinear', align_corners=True)
