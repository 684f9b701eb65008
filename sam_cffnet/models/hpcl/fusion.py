"""Feature-space fusion of the optical (frozen SAM) features with the DEM branch's features.

One fusion module per tapped encoder level (all four by default); each takes the level's optical map F
(B x C x h x w) and the DEM map D (B x Cd x h x w) and returns a map of F's shape, so the CFFD decoder runs on
the fused levels unchanged.

Modes (the abstract names no operator; these are the two common ones, plus the no-DEM baseline):

* ``'concat'``: ``W [F; D]`` with a 1 x 1 convolution back to C. Initialised to the identity on F and zero on D,
  so training starts from the optical-only model and the DEM's contribution is learnt.
* ``'gated'``: ``F + g * P D`` with ``g = sigmoid(W_g [F; D])`` a per-pixel, per-channel gate (attention over the
  DEM evidence) and ``P`` a 1 x 1 projection of D to C (zero-initialised, same starting point as above).
* ``'none'``: F unchanged (no DEM; the ablation baseline, = SAM-CFFNet).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ...errors import ConfigError

__all__ = ['FUSION_MODES', 'ConcatFusion', 'GatedFusion', 'build_fusion']

FusionMode = Literal['concat', 'gated', 'none']
FUSION_MODES: tuple[str, ...] = ('concat', 'gated', 'none')


class ConcatFusion(nn.Module):
    """Concatenation + 1 x 1 projection back to the optical width.

    Args:
        channels: optical width C.
        dem_channels: DEM width Cd.

    Shapes:
        (B x C x h x w, B x Cd x h x w) -> B x C x h x w.
    """

    def __init__(self, channels: int, dem_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels + dem_channels, channels, 1)
        with torch.no_grad():
            self.proj.weight.zero_()
            self.proj.bias.zero_()
            self.proj.weight[:, :channels, 0, 0] = torch.eye(channels)

    def forward(self, optical: Tensor, dem: Tensor) -> Tensor:
        """Fuse the DEM features into the optical ones: concatenation, then a 1 x 1 projection."""
        return self.proj(torch.cat([optical, dem.to(optical.dtype)], dim=1))


class GatedFusion(nn.Module):
    """Gated residual fusion: ``F + sigmoid(W_g [F; D]) * P D``.

    Args:
        channels: optical width C.
        dem_channels: DEM width Cd.

    Shapes:
        (B x C x h x w, B x Cd x h x w) -> B x C x h x w.
    """

    def __init__(self, channels: int, dem_channels: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(channels + dem_channels, channels, 1)
        self.value = nn.Conv2d(dem_channels, channels, 1)
        with torch.no_grad():
            self.value.weight.zero_()
            self.value.bias.zero_()

    def forward(self, optical: Tensor, dem: Tensor) -> Tensor:
        """Add the projected DEM features to the optical ones, weighted by a sigmoid gate."""
        dem = dem.to(optical.dtype)
        g = torch.sigmoid(self.gate(torch.cat([optical, dem], dim=1)))
        return optical + g * self.value(dem)


def build_fusion(mode: FusionMode, channels: int, dem_channels: int) -> nn.Module | None:
    """One level's fusion module (``None`` for ``'none'``).

    Raises:
        ConfigError: an unknown mode.
    """
    if mode == 'concat':
        return ConcatFusion(channels, dem_channels)
    if mode == 'gated':
        return GatedFusion(channels, dem_channels)
    if mode == 'none':
        return None
    raise ConfigError(f'fusion must be one of {FUSION_MODES}, got {mode!r}')
