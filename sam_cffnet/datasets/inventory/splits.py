"""Spatial splits of the inventory's grid: random blocks or given regions, a gap between them, and their areas.

Like torchgeo's ``random_grid_cell_assignment`` and ``roi_split`` (``torchgeo/datasets/splits.py``), on the
inventory's per-cell counts instead of a dataset's index: each function returns ``(rows, cols)`` int8 cells holding
the split of each cell (0 train, 1 val, 2 test, -1 none), so that no pixel is in two splits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely

from ...errors import ConfigError, DataError, MissingFileError
from ..splits import split_indices
from ._log import Log
from .grid import PixelGrid, window_sums

__all__ = ['SPLITS', 'block_split', 'leave_gap', 'region_split', 'split_areas']

#: The splits, in the order of their numbers in the split cells.
SPLITS = ('train', 'val', 'test')


def block_split(
    valid: np.ndarray,
    landslide: np.ndarray,
    cell: int,
    block_size: int,
    ratios: Sequence[float],
    seed: int,
    tile_size: int,
) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
    """Square blocks of ``block_size`` pixels holding data go to train/val/test at random.

    The draw is seeded and stratified by whether a block holds landslides; every split with a positive share gets
    at least one block.

    Args:
        valid: ``(R, C)`` usable pixels per cell.
        landslide: ``(R, C)`` landslide pixels per cell.
        cell: cell edge in pixels.
        block_size: block edge in pixels (a multiple of ``cell``).
        ratios: (train, val, test) shares of the blocks.
        seed: seed of the draw.
        tile_size: the tile size, named in the error.

    Returns:
        ``(R, C)`` int8 split of every cell, and ``{'blocks': {split: n}, 'blocks_with_landslides': {split: n}}``.

    Raises:
        ConfigError: fewer blocks hold data than there are splits with a positive share.
    """
    kb = block_size // cell
    rows, cols = valid.shape
    br, bc = math.ceil(rows / kb), math.ceil(cols / kb)

    def per_block(a: np.ndarray) -> np.ndarray:
        padded = np.zeros((br * kb, bc * kb), np.int64)
        padded[:rows, :cols] = a
        return padded.reshape(br, kb, bc, kb).sum((1, 3))

    bvalid, bland = per_block(valid), per_block(landslide)
    blocks = np.argwhere(bvalid > 0)
    wanted = [s for s, r in enumerate(ratios) if r > 0]
    if len(blocks) < len(wanted):
        raise ConfigError(
            f'data.init_args.block_size: only {len(blocks)} block(s) of {block_size} px hold data, fewer than '
            f'the {len(wanted)} splits; use a smaller block_size (a multiple of tile_size {tile_size})'
        )
    has_land = bland[blocks[:, 0], blocks[:, 1]] > 0
    parts = split_indices(len(blocks), ratios, seed, groups=has_land.tolist())
    for s in wanted:  # every split with a positive share gets at least one block
        if not parts[s]:
            donor = max(range(3), key=lambda p: len(parts[p]))
            parts[s].append(parts[donor].pop())
    block_split = np.full((br, bc), -1, np.int8)
    for s, idx in enumerate(parts):
        block_split[blocks[idx, 0], blocks[idx, 1]] = s
    info = {
        'blocks': {SPLITS[s]: len(p) for s, p in enumerate(parts)},
        'blocks_with_landslides': {SPLITS[s]: int(has_land[p].sum()) for s, p in enumerate(parts)},
    }
    return np.repeat(np.repeat(block_split, kb, 0), kb, 1)[:rows, :cols], info


def _read_regions(path: str, attribute: str, grid: PixelGrid, warn: Log) -> dict[str, Any]:
    """The train/val/test regions of a vector file in the grid's CRS (one valid geometry each)."""
    where = f'data.init_args.split_regions: {path}'
    if not Path(path).is_file():
        raise MissingFileError(f'{where} does not exist')
    try:
        frame = gpd.read_file(path)
    except Exception as err:
        raise DataError(f'{where} cannot be read as a vector file ({err})') from err
    if attribute not in frame.columns:
        raise DataError(
            f'{where} has no column {attribute!r} (columns: '
            f'{[c for c in frame.columns if c != "geometry"]}); set data.init_args.split_attribute'
        )
    if frame.crs is None:
        raise DataError(f'{where} has no CRS')
    names = frame[attribute].astype(str).str.strip().str.lower()
    unknown = sorted(set(names) - set(SPLITS))
    if unknown:
        warn(f'{where}: values {unknown} of {attribute!r} are not train/val/test; ignored')
    frame = frame.to_crs(grid.crs)
    regions = {s: shapely.make_valid(shapely.union_all(frame.geometry[(names == s).values].values)) for s in SPLITS}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            overlap = regions[a].intersection(regions[b]).area
            if overlap > 0:
                raise DataError(
                    f'{where}: the {a} and {b} regions overlap ({overlap:g} square CRS units); a pixel may belong '
                    f'to one split only'
                )
    return regions


def region_split(valid: np.ndarray, grid: PixelGrid, path: str, attribute: str, warn: Log) -> np.ndarray:
    """Cells with data go to the split whose region (a polygon of ``path``) covers them entirely.

    Args:
        valid: ``(R, C)`` usable pixels per cell.
        grid: the pixel grid.
        path: vector file of the regions (any CRS).
        attribute: its column naming the split (``train``/``val``/``test``; other values are warned and ignored).
        warn: where to warn.

    Returns:
        ``(R, C)`` int8 split of every cell.

    Raises:
        MissingFileError: ``path`` does not exist.
        DataError: unreadable, no such column, no CRS, or regions of two splits overlap.
    """
    regions = _read_regions(path, attribute, grid, warn)
    split = np.full(valid.shape, -1, np.int8)
    rr, cc = np.nonzero(valid > 0)
    c = grid.cell
    xmin = grid.left + cc * c * grid.res[0]
    ymax = grid.top - rr * c * grid.res[1]
    boxes = shapely.box(xmin, ymax - c * grid.res[1], xmin + c * grid.res[0], ymax)
    for s, name in enumerate(SPLITS):
        if regions[name].is_empty:
            continue
        shapely.prepare(regions[name])
        inside = shapely.covered_by(boxes, regions[name])
        split[rr[inside], cc[inside]] = s
    return split


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation of a boolean array by ``radius`` cells."""
    if radius <= 0:
        return mask.copy()
    padded = np.pad(mask.astype(np.int64), radius)
    return window_sums(padded, 2 * radius + 1) > 0


def leave_gap(split: np.ndarray, gap: int) -> np.ndarray:
    """Leave out (-1) the val/test cells within ``gap`` cells of another split (in place).

    Args:
        split: ``(R, C)`` int8 split cells.
        gap: the gap in cells (0: nothing is left out).

    Returns:
        ``split``.
    """
    if gap:
        for s in (1, 2):
            others = (split >= 0) & (split != s)
            split[(split == s) & _dilate(others, gap)] = -1
    return split


def split_areas(
    split: np.ndarray, pixel_km2: np.ndarray, valid: np.ndarray, landslide: np.ndarray
) -> tuple[dict[str, dict[str, float]], float, float]:
    """Area with data and landslide area of each split, in km².

    Args:
        split: ``(R, C)`` int8 split cells.
        pixel_km2: ``(R,)`` area of one pixel in each row of cells (:meth:`PixelGrid.pixel_area_km2`).
        valid: ``(R, C)`` usable pixels per cell.
        landslide: ``(R, C)`` landslide pixels per cell.

    Returns:
        ``({split: {'area_km2', 'landslide_km2'}}, area left out, total area with data)``.
    """
    valid_km2 = valid * pixel_km2[:, None]
    land_km2 = landslide * pixel_km2[:, None]
    areas = {
        name: {'area_km2': float(valid_km2[split == s].sum()), 'landslide_km2': float(land_km2[split == s].sum())}
        for s, name in enumerate(SPLITS)
    }
    return areas, float(valid_km2[split < 0].sum()), float(valid_km2.sum())
