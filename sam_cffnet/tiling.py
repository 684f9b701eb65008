"""The one rule that cuts scenes into tiles.

It makes GVLM's training tiles, chip windows, whole-scene mapping windows and the tiles of the inventory's splits.

Tiles of ``tile`` pixels every ``stride`` pixels along each axis from offset 0. At the far edge the last tile is
either snapped to the edge (``edge='snap'``, GVLM's official ``start_points``: a scene is covered without padding
when it is at least one tile wide) or dropped where it would pass the edge (``edge='drop'``: every tile lies wholly
inside, and every start is a multiple of ``stride``; the inventory's tiles, whose starts are cells of its grid).
"""

from __future__ import annotations

from typing import Literal

from .errors import ConfigError

__all__ = ['Edge', 'tile_starts', 'tile_windows']

#: What happens at the far edge: ``'snap'`` the last tile to it, or ``'drop'`` tiles that would pass it.
Edge = Literal['snap', 'drop']


def tile_starts(length: int, tile: int, stride: int, edge: Edge = 'snap') -> list[int]:
    """Start offsets of tiles along one axis.

    Args:
        length: Axis length in pixels.
        tile: Tile size.
        stride: Step between tiles (``stride == tile``: no overlap).
        edge: ``'snap'``: the last tile is snapped to the edge (``[0]`` when ``length <= tile``: the tile is then
            padded); ``'drop'``: only tiles wholly inside (``[]`` when ``length < tile``).

    Returns:
        Sorted unique start offsets.

    Raises:
        ConfigError: ``tile`` or ``stride`` is not positive, or ``edge`` is neither ``'snap'`` nor ``'drop'``.
    """
    if tile <= 0 or stride <= 0:
        raise ConfigError(f'tile ({tile}) and stride ({stride}) must be positive')
    if edge not in ('snap', 'drop'):
        raise ConfigError(f"edge must be 'snap' or 'drop', got {edge!r}")
    if edge == 'drop':
        return list(range(0, length - tile + 1, stride))
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def tile_windows(
    height: int, width: int, tile: int, stride: int | None = None, edge: Edge = 'snap'
) -> list[tuple[int, int]]:
    """Row-major list of ``(row, col)`` tile offsets covering a ``height x width`` raster.

    Args:
        height: Raster height.
        width: Raster width.
        tile: Tile size.
        stride: Step (default ``tile``).
        edge: The far edge's rule (see :func:`tile_starts`).

    Returns:
        List of ``(row_off, col_off)``.
    """
    stride = stride or tile
    return [(r, c) for r in tile_starts(height, tile, stride, edge) for c in tile_starts(width, tile, stride, edge)]
