"""Terrain features derived from an elevation tile: slope, aspect and hillshade (pure functions, any device).

HPCL-Net fuses "DEM data" with the optical image; the abstract does not say which DEM derivatives it uses. Slope,
aspect and hillshade are the usual ones for landslide mapping, so the DEM branch can compute them from the
elevation when a dataset only carries a DEM (Bijie). Conventions (those of GDAL ``gdaldem``):

* gradients with Horn's 3 x 3 operator; the border is padded by linear extrapolation, so a plane gives its exact
  gradient everywhere (no edge artefacts);
* rows run north -> south (row 0 is the northern edge), columns west -> east;
* ``slope``: radians in [0, pi/2);
* ``aspect``: the compass direction the slope faces (downhill), clockwise from north, encoded as two channels
  ``(sin(aspect), cos(aspect))`` (it is circular); both are 0 on flat ground;
* ``hillshade``: Lambertian shading in [0, 1] for a sun at ``azimuth`` degrees (clockwise from north) and
  ``altitude`` degrees above the horizon (gdaldem defaults 315 and 45).

Units: ``slope`` and ``hillshade`` need the elevation and ``pixel_size`` in the same unit. The datamodules deliver
the DEM z-scored per tile, so slopes computed from it are *relative* (the tile's elevation spread sets the scale);
aspect does not depend on the scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import ConfigError

__all__ = ['TERRAIN_FEATURES', 'terrain_channels', 'terrain_gradients', 'terrain_stack']

#: Derivable features and the channels each one produces.
TERRAIN_FEATURES: dict[str, int] = {'elevation': 1, 'slope': 1, 'aspect': 2, 'hillshade': 1}


def terrain_channels(features: Sequence[str]) -> int:
    """Number of channels :func:`terrain_stack` returns for ``features`` (``aspect`` gives two).

    Raises:
        ConfigError: an unknown feature name.
    """
    unknown = [f for f in features if f not in TERRAIN_FEATURES]
    if unknown:
        raise ConfigError(f'unknown terrain features {unknown}; choose from {list(TERRAIN_FEATURES)}')
    return sum(TERRAIN_FEATURES[f] for f in features)


def _pad_linear(z: Tensor) -> Tensor:
    """Pad one pixel on each side by linear extrapolation (exact for planes). z: B x 1 x H x W, H, W >= 2."""
    top = 2 * z[..., :1, :] - z[..., 1:2, :]
    bottom = 2 * z[..., -1:, :] - z[..., -2:-1, :]
    z = torch.cat([top, z, bottom], dim=-2)
    left = 2 * z[..., :, :1] - z[..., :, 1:2]
    right = 2 * z[..., :, -1:] - z[..., :, -2:-1]
    return torch.cat([left, z, right], dim=-1)


def terrain_gradients(elevation: Tensor, pixel_size: float = 1.0) -> tuple[Tensor, Tensor]:
    """Horn's gradients of an elevation grid.

    Args:
        elevation: B x 1 x H x W (H, W >= 2).
        pixel_size: ground size of a pixel, in the elevation's unit.

    Returns:
        ``(dz/dx, dz/dy)``, each B x 1 x H x W: ``x`` increases eastwards (columns), ``y`` northwards (against
        the rows).
    """
    if elevation.ndim != 4 or elevation.shape[1] != 1:
        raise ValueError(f'elevation must be B x 1 x H x W, got shape {tuple(elevation.shape)}')
    if min(elevation.shape[-2:]) < 2:
        raise ValueError(f'elevation needs at least 2 x 2 pixels, got {tuple(elevation.shape[-2:])}')
    if pixel_size <= 0:
        raise ConfigError(f'pixel_size must be positive, got {pixel_size}')
    z = _pad_linear(elevation.float())
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=z.device) / (8 * pixel_size)
    # d/d(row) with rows growing southwards; dz/dy (northwards) is its negative.
    krow = kx.t()
    dzdx = F.conv2d(z, kx.view(1, 1, 3, 3))
    dzdrow = F.conv2d(z, krow.reshape(1, 1, 3, 3))
    return dzdx, -dzdrow


def terrain_stack(
    elevation: Tensor,
    pixel_size: float = 1.0,
    features: Sequence[str] = ('elevation', 'slope', 'aspect', 'hillshade'),
    azimuth: float = 315.0,
    altitude: float = 45.0,
) -> Tensor:
    """Stack terrain features derived from an elevation tile.

    Args:
        elevation: B x 1 x H x W elevation (any unit; see the module docstring for units).
        pixel_size: ground size of a pixel in the elevation's unit (scales slope and hillshade).
        features: any of ``'elevation'`` (the input itself), ``'slope'`` (radians), ``'aspect'`` (sin, cos of the
            downhill compass direction), ``'hillshade'`` ([0, 1]), in the order wanted.
        azimuth: sun azimuth for the hillshade, degrees clockwise from north.
        altitude: sun altitude for the hillshade, degrees above the horizon.

    Returns:
        B x :func:`terrain_channels` (features) x H x W float32.

    Examples:
        >>> z = torch.arange(16.0).view(1, 1, 4, 4) % 4  # rises eastwards by 1 per pixel
        >>> terrain_stack(z, features=('slope',))[0, 0, 0, 0].item()  # atan(1) = pi / 4
        0.785398...
    """
    terrain_channels(features)
    if not features:
        raise ConfigError('features must name at least one terrain feature')
    dzdx, dzdy = terrain_gradients(elevation, pixel_size)
    grad = torch.sqrt(dzdx**2 + dzdy**2)
    slope = torch.atan(grad)
    # Downhill direction (-grad) as a compass angle: atan2(east component, north component).
    flat = grad <= 1e-12
    aspect = torch.atan2(-dzdx, -dzdy)
    out: list[Tensor] = []
    for name in features:
        if name == 'elevation':
            out.append(elevation.float())
        elif name == 'slope':
            out.append(slope)
        elif name == 'aspect':
            out.append(torch.where(flat, torch.zeros_like(aspect), torch.sin(aspect)))
            out.append(torch.where(flat, torch.zeros_like(aspect), torch.cos(aspect)))
        else:  # hillshade
            zenith = math.radians(90.0 - altitude)
            az = math.radians(azimuth)
            shade = math.cos(zenith) * torch.cos(slope) + math.sin(zenith) * torch.sin(slope) * torch.cos(az - aspect)
            out.append(shade.clamp(0.0, 1.0))
    return torch.cat(out, dim=1)
