"""The DEM branch of HPCL-Net: terrain features -> a small CNN -> a feature map on the optical encoder's grid.

Assumption (the abstract says only that optical and DEM data are fused "in the semantic feature space"): the DEM
gets its own light encoder, a plain CNN of stride-2 conv-BN-ReLU stages, whose output is resized to the token grid
of the frozen SAM encoder and fused into each tapped level (see :mod:`.fusion`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from .terrain import terrain_channels, terrain_stack

__all__ = ['DEMBranch']


def _conv_bn_relu(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class DEMBranch(nn.Module):
    """Terrain stack + CNN encoder for the DEM input.

    Input channels of the CNN: the channels of ``batch['dem']`` other than the elevation (kept as they are, e.g.
    Landslide4Sense's slope band), followed by ``terrain_features`` derived from the elevation channel by
    :func:`~.terrain.terrain_stack` (``'elevation'`` in that list keeps the elevation itself).

    Args:
        in_channels: channels K of ``batch['dem']`` (Bijie 1: elevation; Landslide4Sense 2: slope, elevation).
        elevation_channel: index of the elevation in ``batch['dem']``; ``None``: no elevation, nothing derived.
        terrain_features: features derived from the elevation (see :data:`~.terrain.TERRAIN_FEATURES`).
        pixel_size: pixel size for the derivation, in the DEM's unit (see :mod:`.terrain` on units).
        channels: widths of the CNN stages; each stage halves the resolution. Four stages (stride 16, the ViT
            patch size) land on the token grid when the encoder runs at the tile size (``encoder_input_size:
            null``); with the reference 256 -> 1024 resize the grid is T / 4, so two stages match it. Any other
            output size is resized bilinearly.
        out_channels: width of the output feature map.
        input_norm: ``'batch'`` (BatchNorm over the CNN input channels, which puts the derived features with
            their very different ranges on a common scale) or ``'none'``.

    Shapes:
        dem: B x K x T x T -> B x out_channels x h x w (``grid=(h, w)``; bilinear resize of the last stage).
    """

    def __init__(
        self,
        in_channels: int = 1,
        elevation_channel: int | None = 0,
        terrain_features: Sequence[str] = ('elevation', 'slope', 'aspect', 'hillshade'),
        pixel_size: float = 1.0,
        channels: Sequence[int] = (32, 64, 128, 128),
        out_channels: int = 128,
        input_norm: Literal['batch', 'none'] = 'batch',
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ConfigError(f'dem in_channels must be >= 1, got {in_channels}')
        if elevation_channel is not None and not 0 <= elevation_channel < in_channels:
            raise ConfigError(f'elevation_channel must be in [0, {in_channels - 1}] or None, got {elevation_channel}')
        if elevation_channel is None and terrain_features:
            raise ConfigError(
                'terrain_features need an elevation channel: set elevation_channel or terrain_features=[]'
            )
        if input_norm not in ('batch', 'none'):
            raise ConfigError(f"input_norm must be 'batch' or 'none', got {input_norm!r}")
        if not channels:
            raise ConfigError('channels must list at least one stage width')
        self.in_channels = in_channels
        self.elevation_channel = elevation_channel
        self.terrain_features = tuple(terrain_features)
        self.pixel_size = float(pixel_size)
        kept = in_channels - (1 if elevation_channel is not None else 0)
        self.cnn_in_channels = kept + (terrain_channels(self.terrain_features) if self.terrain_features else 0)
        if self.cnn_in_channels < 1:
            raise ConfigError('the DEM branch has no input: keep the elevation (terrain_features) or another channel')
        self.out_channels = out_channels
        self.input_norm = nn.BatchNorm2d(self.cnn_in_channels) if input_norm == 'batch' else nn.Identity()
        stages: list[nn.Module] = []
        prev = self.cnn_in_channels
        for width in channels:
            stages.append(_conv_bn_relu(prev, width, stride=2))
            prev = width
        self.stages = nn.Sequential(*stages)
        self.proj = nn.Sequential(nn.Conv2d(prev, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))

    def terrain(self, dem: Tensor) -> Tensor:
        """The CNN input: kept channels, then the derived terrain features (B x cnn_in_channels x T x T)."""
        if dem.ndim != 4 or dem.shape[1] != self.in_channels:
            raise ConfigError(
                f'the DEM branch takes batch["dem"] of shape B x {self.in_channels} x H x W, got {tuple(dem.shape)}; '
                f"set dem_in_channels to the datamodule's DEM channels (Bijie 1, Landslide4Sense 2) and "
                f'data dem_mode: separate'
            )
        dem = dem.float()
        if self.elevation_channel is None:
            return dem
        e = self.elevation_channel
        parts = [dem[:, :e], dem[:, e + 1 :]]
        if self.terrain_features:
            parts.append(terrain_stack(dem[:, e : e + 1], self.pixel_size, self.terrain_features))
        return torch.cat([p for p in parts if p.shape[1]], dim=1)

    def forward(self, dem: Tensor, grid: tuple[int, int]) -> Tensor:
        """DEM features on the optical token grid.

        Args:
            dem: B x K x T x T (``batch['dem']``).
            grid: (h, w) of the optical encoder's feature maps.

        Returns:
            B x out_channels x h x w.
        """
        x = self.proj(self.stages(self.input_norm(self.terrain(dem))))
        if tuple(x.shape[-2:]) != tuple(grid):
            x = F.interpolate(x, size=grid, mode='bilinear', align_corners=False)
        return x
