"""Hyper-pixels: region-pooled feature vectors, labelled by their mask fraction, sampled near mask boundaries.

The abstract of HPCL-Net says only that hyper-pixel-wise contrastive learning "strengthens local salient features
at landslide boundaries". Assumptions made here (each one a :class:`HyperPixelizer` option):

* a hyper-pixel is the average of a feature map over a small region: a fixed ``size x size`` patch of the
  feature grid (``mode='grid'``) or a superpixel of the optical image (``mode='superpixel'``, a SLIC-style local
  k-means in colour + position, computed without gradients on a ``superpixel_resolution`` working grid);
* its label is landslide when its landslide pixel fraction is >= ``label_threshold`` (0.5), else background;
  hyper-pixels that are too mixed (purity ``max(f, 1 - f) < min_purity``) are not used;
* it is *near the boundary* when some of its pixels lie within ``boundary_width`` tile pixels of a mask edge;
  queries are drawn per class, with ``boundary_ratio`` of them taken from near-boundary hyper-pixels when there
  are enough (the shortfall is filled from the others), uniformly at random inside each group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError

__all__ = ['HyperPixelizer', 'HyperPixels', 'boundary_band', 'sample_hyperpixels', 'slic_superpixels']


@dataclass
class HyperPixels:
    """Regions of a batch and their labels (computed without gradients).

    Attributes:
        fraction: B x P landslide pixel fraction of each region.
        boundary: B x P bool, region touches the boundary band.
        valid: B x P bool, region is pure enough (and non-empty).
        labels: B x P int64 (1 landslide, 0 background).
        weights: ``None`` for grid regions (pooling is an average pool), else B x P x (h * w) pooling weights on
            the feature grid (rows sum to 1 for non-empty regions).
        cell: grid cell side in feature cells (grid mode).
    """

    fraction: Tensor
    boundary: Tensor
    valid: Tensor
    labels: Tensor
    weights: Tensor | None = None
    cell: int = 1

    def pool(self, features: Tensor) -> Tensor:
        """Average ``features`` (B x D x h x w) over every region: B x P x D."""
        if self.weights is None:
            pooled = F.avg_pool2d(features, self.cell, self.cell, ceil_mode=True)
            return pooled.flatten(2).transpose(1, 2)
        return torch.bmm(self.weights.to(features.dtype), features.flatten(2).transpose(1, 2))


def boundary_band(mask: Tensor, width: int) -> Tensor:
    """Pixels within ``width`` pixels (Chebyshev distance) of a mask edge, on either side.

    Args:
        mask: B x H x W in {0, 1}.
        width: band half-width in pixels (>= 1).

    Returns:
        B x H x W bool.
    """
    m = mask.float().unsqueeze(1)
    k = 2 * max(int(width), 1) + 1

    def square_max(x: Tensor) -> Tensor:  # separable k x k max filter
        x = F.max_pool2d(x, (k, 1), 1, (k // 2, 0))
        return F.max_pool2d(x, (1, k), 1, (0, k // 2))

    return (square_max(m) != -square_max(-m))[:, 0]


@torch.no_grad()
def slic_superpixels(image: Tensor, num_segments: int = 64, compactness: float = 0.5, iterations: int = 5) -> Tensor:
    """SLIC-style superpixels by k-means in (colour, position), batched, on any device.

    Colours are standardised per image and channel; positions are measured in units of the seed spacing S and
    weighted by ``compactness`` (larger: more square regions). Centres start on a regular grid of
    ``round(sqrt(num_segments))**2`` seeds; every pixel is compared with every centre (cheap at the small working
    resolutions used here). Connectivity is not enforced, so a label can be split in a few pieces.

    Args:
        image: B x C x H x W.
        num_segments: wanted number of superpixels (rounded to a square number of seeds).
        compactness: weight of the spatial distance.
        iterations: k-means iterations.

    Returns:
        B x H x W int64 labels in [0, P).
    """
    b, _, h, w = image.shape
    g = max(1, round(math.sqrt(num_segments)))
    x = image.float()
    x = (x - x.mean(dim=(-2, -1), keepdim=True)) / x.std(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
    step = math.sqrt(h * w) / g
    yy, xx = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=x.dtype), torch.arange(w, device=x.device, dtype=x.dtype), indexing='ij'
    )
    pos = torch.stack([yy, xx]) * (compactness / step)  # 2 x H x W
    feats = torch.cat([x, pos.expand(b, -1, -1, -1)], dim=1).flatten(2)  # B x (C + 2) x N
    centres = F.adaptive_avg_pool2d(torch.cat([x, pos.expand(b, -1, -1, -1)], dim=1), (g, g)).flatten(2)  # B x F x P
    labels = torch.zeros(b, h * w, dtype=torch.long, device=x.device)
    for _ in range(max(1, iterations)):
        d = (feats.pow(2).sum(1, keepdim=True) - 2 * centres.transpose(1, 2) @ feats
             + centres.pow(2).sum(1).unsqueeze(-1))  # B x P x N  # fmt: skip
        labels = d.argmin(dim=1)
        onehot = F.one_hot(labels, g * g).to(x.dtype)  # B x N x P
        counts = onehot.sum(1)  # B x P
        sums = feats @ onehot  # B x F x P
        new = sums / counts.clamp_min(1).unsqueeze(1)
        centres = torch.where(counts.unsqueeze(1) > 0, new, centres)
    return labels.view(b, h, w)


def sample_hyperpixels(
    hp: HyperPixels, per_class: int, boundary_ratio: float, generator: torch.Generator | None = None
) -> Tensor:
    """Indices (into the flattened B * P regions) of the query hyper-pixels, per class with boundary priority.

    For each class: ``round(boundary_ratio * per_class)`` are drawn among its valid near-boundary regions (all of
    them if fewer), the rest among its other valid regions, and any shortfall is filled from what is left of
    either group. Draws are uniform without replacement (``torch.randperm``).

    Args:
        hp: the batch's hyper-pixels.
        per_class: queries wanted per class.
        boundary_ratio: share of near-boundary queries in [0, 1].
        generator: optional generator for the draws.

    Returns:
        1-D int64 indices (at most ``2 * per_class``), on the device of ``hp.labels``.
    """
    labels = hp.labels.flatten()
    valid = hp.valid.flatten()
    near = hp.boundary.flatten()
    device = labels.device
    chosen: list[Tensor] = []

    def shuffled(idx: Tensor) -> Tensor:
        perm = torch.randperm(idx.numel(), generator=generator, device='cpu').to(device)
        return idx[perm]

    for cls in (0, 1):
        pool = valid & (labels == cls)
        b_idx = shuffled(torch.nonzero(pool & near).flatten())
        o_idx = shuffled(torch.nonzero(pool & ~near).flatten())
        n_b = min(b_idx.numel(), round(boundary_ratio * per_class))
        n_o = min(o_idx.numel(), per_class - n_b)
        n_b = min(b_idx.numel(), per_class - n_o)  # fill a shortfall of "other" from the boundary group
        chosen += [b_idx[:n_b], o_idx[:n_o]]
    return torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.long, device=device)


class HyperPixelizer(nn.Module):
    """Builds the hyper-pixels of a batch (no parameters, no gradients).

    Args:
        mode: ``'grid'`` (square patches of the feature grid) or ``'superpixel'`` (SLIC-style on the image).
        size: grid mode: patch side in feature-grid cells (a cell = 16 encoder-input pixels).
        num_superpixels: superpixel mode: superpixels per tile.
        superpixel_resolution: superpixel mode: side of the working grid the superpixels are computed on.
        compactness: superpixel mode: spatial weight (see :func:`slic_superpixels`).
        label_threshold: landslide fraction from which a region is labelled landslide.
        min_purity: regions with ``max(f, 1 - f)`` below this are not used.
        boundary_width: half-width of the boundary band in tile pixels; ``None``: the side of one region in tile
            pixels (grid: ``size * T / h``; superpixels: ``T / sqrt(num_superpixels)``).
    """

    def __init__(
        self,
        mode: Literal['grid', 'superpixel'] = 'grid',
        size: int = 1,
        num_superpixels: int = 64,
        superpixel_resolution: int = 64,
        compactness: float = 0.5,
        label_threshold: float = 0.5,
        min_purity: float = 0.75,
        boundary_width: int | None = None,
    ) -> None:
        super().__init__()
        if mode not in ('grid', 'superpixel'):
            raise ConfigError(f"hyperpixel mode must be 'grid' or 'superpixel', got {mode!r}")
        if size < 1 or num_superpixels < 1 or superpixel_resolution < 2:
            raise ConfigError('hyperpixel size, num_superpixels must be >= 1 and superpixel_resolution >= 2')
        if not 0.0 < label_threshold < 1.0 or not 0.5 <= min_purity <= 1.0:
            raise ConfigError(f'need 0 < label_threshold < 1 and 0.5 <= min_purity <= 1, got {label_threshold}, '
                             f'{min_purity}')  # fmt: skip
        self.mode = mode
        self.size = int(size)
        self.num_superpixels = int(num_superpixels)
        self.superpixel_resolution = int(superpixel_resolution)
        self.compactness = float(compactness)
        self.label_threshold = float(label_threshold)
        self.min_purity = float(min_purity)
        self.boundary_width = boundary_width

    def extra_repr(self) -> str:
        """The hyper-pixel settings, for the module's repr."""
        return f'mode={self.mode!r}, size={self.size}, label_threshold={self.label_threshold}'

    @torch.no_grad()
    def forward(self, mask: Tensor, grid: tuple[int, int], image: Tensor | None = None) -> HyperPixels:
        """Regions, labels and boundary flags of a batch.

        Args:
            mask: B x T x T (or B x 1 x T x T) ground truth in {0, 1}.
            grid: (h, w) of the feature map that will be pooled.
            image: B x 3 x S x S optical image (needed for superpixels).

        Returns:
            :class:`HyperPixels` with P regions per image.
        """
        if mask.ndim == 4:
            mask = mask[:, 0]
        m = (mask > 0).float()
        h, w = grid
        if self.mode == 'grid':
            gh, gw = math.ceil(h / self.size), math.ceil(w / self.size)
            width = self.boundary_width or max(1, round(m.shape[-2] / gh))
            fraction = F.adaptive_avg_pool2d(m[:, None], (gh, gw)).flatten(1)
            band = boundary_band(m, width).float()
            boundary = F.adaptive_max_pool2d(band[:, None], (gh, gw)).flatten(1) > 0
            weights = None
            nonempty = torch.ones_like(boundary)
        else:
            if image is None:
                raise ValueError("hyperpixel mode 'superpixel' needs the optical image")
            r = self.superpixel_resolution
            small = F.interpolate(image.float(), size=(r, r), mode='area')
            labels = slic_superpixels(small, self.num_superpixels, self.compactness)
            p = round(math.sqrt(self.num_superpixels)) ** 2
            onehot = F.one_hot(labels, p).permute(0, 3, 1, 2).float()  # B x P x r x r
            counts = onehot.sum((-2, -1))  # B x P
            nonempty = counts > 0
            width = self.boundary_width or max(1, round(m.shape[-2] / math.sqrt(p)))
            m_r = F.interpolate(m[:, None], size=(r, r), mode='area')[:, 0]
            band_r = F.interpolate(boundary_band(m, width).float()[:, None], size=(r, r), mode='area')[:, 0]
            fraction = (onehot * m_r[:, None]).sum((-2, -1)) / counts.clamp_min(1)
            boundary = (onehot * band_r[:, None]).sum((-2, -1)) > 0
            cover = F.adaptive_avg_pool2d(onehot, (h, w)).flatten(2)  # B x P x (h * w)
            weights = cover / cover.sum(-1, keepdim=True).clamp_min(1e-12)
        labels_ = (fraction >= self.label_threshold).long()
        purity = torch.maximum(fraction, 1 - fraction)
        valid = nonempty & (purity >= self.min_purity)
        return HyperPixels(fraction, boundary, valid, labels_, weights, self.size)
