"""LawinASPP head (Yan et al., "Lawin Transformer", 2022): large-window attention spatial pyramid pooling (Model IV).

LawinASPP replaces ASPP's dilated convolutions by *large-window attention*: the map is cut into P x P query patches
(P = 8); for ratio r the context of a patch is the (r P) x (r P) window centred on it, average-pooled back to P x P
(so the cost does not grow with r), and the patch attends to it with multi-head attention (a non-local block whose
heads first mix the context positions with a per-head linear layer). Five branches, as in the paper's code::

    x  B x C_in x h x w --1x1 conv-BN-ReLU (the "linear fuse")--> f  B x C x h x w
    short path   1x1 conv-BN-ReLU(f)
    image pool   global mean -> 1x1 conv-BN-ReLU -> broadcast to h x w
    lawin_r      f + conv_out(attention(query patch, r-context)) for r = 8, 4, 2 (heads 64, 16, 4)
    cat 5 C -> 1x1 conv-BN-ReLU -> Dropout2d(0.1) -> 1x1 conv      -> logits B x 1 x h x w

Differences from the Lawin code (``yan-hao-tian/lawin``), which sits on a 4-stage MiT encoder: the multi-level MLP
projection is the caller's job (here the fused SAM maps come in as one map), and the final low-level (1/4) fusion is
dropped because a plain ViT has no 1/4 feature. The context is computed by pooling the zero-padded map and then
cutting windows, which equals Lawin's ``unfold`` of (r P) x (r P) windows followed by average pooling, without
materializing r^2 copies of the map. Maps whose side is not a multiple of P are zero-padded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from .psp import conv_bn_relu

__all__ = ['LawinASPP', 'LawinAttention', 'LawinHead', 'lawin_context', 'window_partition', 'window_unpartition']


def window_partition(x: Tensor, patch: int) -> Tensor:
    """B x C x H x W (H, W multiples of ``patch``) -> (B * H/P * W/P) x C x P x P, windows in row-major order."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, c, patch, patch)


def window_unpartition(x: Tensor, patch: int, batch: int, size: tuple[int, int]) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nh * nw) x C x P x P -> B x C x H x W."""
    h, w = size
    c = x.shape[1]
    x = x.view(batch, h // patch, w // patch, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(batch, c, h, w)


def lawin_context(x: Tensor, patch: int, ratio: int) -> Tensor:
    """The pooled large-window context of every P x P patch.

    For the patch at (i, j) this is the (ratio P) x (ratio P) window centred on it (zero outside the map),
    average-pooled by ``ratio`` to P x P: Lawin's ``unfold(kernel=rP, stride=P, padding=(r-1)P/2)`` + pooling.

    Args:
        x: B x C x H x W, H and W multiples of ``patch``.
        patch: P (a multiple of ``ratio``).
        ratio: r.

    Returns:
        (B * H/P * W/P) x C x P x P, in :func:`window_partition` order.
    """
    if patch % ratio or ((ratio - 1) * patch) % 2:
        raise ConfigError(f'the patch size ({patch}) must be a multiple of the window ratio ({ratio})')
    b, c = x.shape[:2]
    pad = (ratio - 1) * patch // 2
    pooled = F.avg_pool2d(F.pad(x, (pad, pad, pad, pad)), ratio, ratio)
    cols = F.unfold(pooled, kernel_size=patch, stride=patch // ratio)  # B x C P P x L
    cols = cols.view(b, c, patch, patch, -1).permute(0, 4, 1, 2, 3)
    return cols.reshape(-1, c, patch, patch)


class LawinAttention(nn.Module):
    """Multi-head attention of a query patch over its pooled context (mmcv ``NonLocal2d``, embedded Gaussian, scaled).

    Args:
        channels: C.
        heads: attention heads (the inner width C / reduction must be divisible by it).
        patch: P; the per-head position-mixing MLP acts on the P^2 context positions.
        reduction: inner width C / reduction.

    Shapes: query N x C x P x P, context N x C x P x P -> N x C x P x P (= query + attention output).
    """

    def __init__(self, channels: int, heads: int, patch: int = 8, reduction: int = 2) -> None:
        super().__init__()
        inner = channels // reduction
        if inner % heads or channels % heads:
            raise ConfigError(f'{heads} heads do not divide the widths {channels} / {inner}')
        self.heads = heads
        self.inner = inner
        n = patch * patch
        self.position_mixing = nn.Parameter(torch.empty(heads, n, n)) if heads > 1 else None
        self.position_bias = nn.Parameter(torch.zeros(heads, n)) if heads > 1 else None
        self.g = nn.Conv2d(channels, inner, 1)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.conv_out = nn.Conv2d(inner, channels, 1)
        for conv in (self.g, self.theta, self.phi):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.conv_out.weight)  # mmcv's zeros_init: each branch starts as the identity
        nn.init.zeros_(self.conv_out.bias)
        if self.position_mixing is not None:
            bound = 1 / n**0.5  # nn.Linear's default init
            nn.init.uniform_(self.position_mixing, -bound, bound)
            nn.init.uniform_(self.position_bias, -bound, bound)

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        """Attend from each query patch to its pooled context (with position mixing when set); added to the query."""
        n, c, ph, pw = context.shape
        h = self.heads
        if self.position_mixing is not None:
            ctx = context.reshape(n, h, c // h, ph * pw)
            mixed = torch.einsum('nhcp,hqp->nhcq', ctx, self.position_mixing) + self.position_bias[None, :, None]
            context = context + mixed.reshape(n, c, ph, pw)
        d = self.inner // h
        g = self.g(context).view(n, h, d, -1).transpose(-1, -2)  # n h M d
        theta = self.theta(query).view(n, h, d, -1).transpose(-1, -2)  # n h N d
        phi = self.phi(context).view(n, h, d, -1)  # n h d M
        attn = (theta @ phi / d**0.5).softmax(dim=-1)
        y = (attn @ g).transpose(-1, -2).reshape(n, self.inner, *query.shape[-2:])
        return query + self.conv_out(y)


class LawinASPP(nn.Module):
    """Short path, image pooling and one Lawin attention branch per ratio, concatenated and projected.

    Args:
        channels: C (in and out).
        patch: P.
        ratios: context window ratios (Lawin: 8, 4, 2).
        heads: heads per ratio (Lawin: 64, 16, 4).
        reduction: attention inner width C / reduction.

    Shapes: B x C x H x W -> B x C x H x W.
    """

    def __init__(
        self,
        channels: int = 512,
        patch: int = 8,
        ratios: Sequence[int] = (8, 4, 2),
        heads: Sequence[int] = (64, 16, 4),
        reduction: int = 2,
    ) -> None:
        super().__init__()
        if len(ratios) != len(heads):
            raise ConfigError('give one head count per window ratio')
        self.patch = patch
        self.ratios = tuple(ratios)
        self.short_path = conv_bn_relu(channels, channels, 1)
        self.image_pool = conv_bn_relu(channels, channels, 1, pooled=True)
        self.lawin = nn.ModuleList(LawinAttention(channels, hd, patch, reduction) for hd in heads)
        self.cat = conv_bn_relu(channels * (2 + len(self.ratios)), channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Concatenate the short path, image pooling and per-ratio window attention branches, then project them."""
        b, _, h, w = x.shape
        p = self.patch
        padded = F.pad(x, (0, -w % p, 0, -h % p))
        size = (padded.shape[-2], padded.shape[-1])
        query = window_partition(padded, p)
        outs = [self.short_path(x), self.image_pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, h, w)]
        for ratio, attn in zip(self.ratios, self.lawin):
            y = attn(query, lawin_context(padded, p, ratio))
            outs.append(window_unpartition(y, p, b, size)[..., :h, :w])
        return self.cat(torch.cat(outs, dim=1))


class LawinHead(nn.Module):
    """Lawin decoder head on one feature map.

    Args:
        in_channels: input width.
        channels: LawinASPP width (Lawin: 512).
        patch, ratios, heads, reduction: see :class:`LawinASPP`.
        dropout: dropout before the classifier.
        num_classes: output channels (1 logit).

    Shapes: B x in_channels x h x w -> B x num_classes x h x w.
    """

    def __init__(
        self,
        in_channels: int = 256,
        channels: int = 512,
        patch: int = 8,
        ratios: Sequence[int] = (8, 4, 2),
        heads: Sequence[int] = (64, 16, 4),
        reduction: int = 2,
        dropout: float = 0.1,
        num_classes: int = 1,
    ) -> None:
        super().__init__()
        self.fuse = conv_bn_relu(in_channels, channels, 1)
        self.lawin_aspp = LawinASPP(channels, patch, ratios, heads, reduction)
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Project the input, apply LawinASPP and classify."""
        return self.classifier(self.lawin_aspp(self.fuse(x)))
