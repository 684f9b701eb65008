"""The one rule that cuts scenes into tiles: GVLM's training tiles, chip windows and whole-scene mapping windows.

Tiles of ``tile`` pixels every ``stride`` pixels along each axis, the last one snapped to the edge (GVLM's official
``start_points``), so a scene is covered without padding when it is at least one tile wide.
"""

from __future__ import annotations

from .errors import ConfigError

__all__ = ['tile_starts', 'tile_windows']


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles along one axis; the last tile is snapped to the edge.

    Args:
        length: Axis length in pixels.
        tile: Tile size.
        stride: Step between tiles (``stride == tile``: no overlap).

    Returns:
        Sorted unique start offsets. ``[0]`` when ``length <= tile`` (the tile is then padded).

    Raises:
        ConfigError: ``tile`` or ``stride`` is not positive.
    """
    if tile <= 0 or stride <= 0:
        raise ConfigError(f'tile ({tile}) and stride ({stride}) must be positive')
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def tile_windows(height: int, width: int, tile: int, stride: int | None = None) -> list[tuple[int, int]]:
    """Row-major list of ``(row, col)`` tile offsets covering a ``height x width`` raster.

    Args:
        height: Raster height.
        width: Raster width.
        tile: Tile size.
        stride: Step (default ``tile``).

    Returns:
        List of ``(row_off, col_off)``.
    """
    stride = stride or tile
    return [(r, c) for r in tile_starts(height, tile, stride) for c in tile_starts(width, tile, stride)]
