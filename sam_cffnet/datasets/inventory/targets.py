"""The steps that build the target rasters: the usable area, the landslide polygons in it, and the rasterized targets.

The targets come with their per-cell counts (written block by block, one GeoTIFF per scene).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.windows import Window
from torchgeo.datasets import RasterDataset, VectorDataset

from ...errors import DataError
from ._log import Log
from .files import RasterInfo, valid_footprint
from .grid import PixelGrid
from .labels import _crs_name, _polygonal_part, read_landslide_polygons
from .rasters import BACKGROUND, LANDSLIDE, NODATA

__all__ = ['footprints', 'landslide_polygons', 'scene_windows', 'usable_area', 'write_targets']

#: ``(scene path, row0, row1, col0, col1)``: a scene's window on the grid, in whole cells.
SceneWindow = tuple[str, int, int, int, int]


def footprints(infos: Sequence[RasterInfo], setting: str, crs: CRS, progress: bool, warn: Log) -> Any:
    """The union of the areas where the rasters have data, in ``crs`` (a raster without data is warned)."""
    from tqdm.auto import tqdm

    parts = []
    for i in tqdm(infos, desc=f'{setting} footprints', disable=not progress or len(infos) < 4, leave=False):
        geom = valid_footprint(i.path, crs)
        if geom.is_empty:
            warn(f'data.init_args.{setting}: {i.path} holds no valid pixel (all nodata); it is ignored')
        parts.append(geom)
    return shapely.union_all(parts)


def _coverage(imagery: Any, cover: Any) -> float:
    return imagery.intersection(cover).area / imagery.area if not cover.is_empty else 0.0


def usable_area(
    images: Sequence[RasterInfo],
    dems: Sequence[RasterInfo],
    label_rasters: Sequence[RasterInfo],
    crs: CRS,
    progress: bool,
    warn: Log,
    footprint_warn: Log,
) -> tuple[Any, Any, dict[str, Any]]:
    """Where imagery, DEM and label raster all have data.

    Args:
        images: the scenes' headers.
        dems: the DEMs' headers.
        label_rasters: the label rasters' headers (none for polygon labels).
        crs: the grid's CRS.
        progress: show a progress bar over many files.
        warn: where to warn about a partial coverage.
        footprint_warn: where to warn about a file without data.

    Returns:
        ``(imagery footprint, usable area, summary entries)``.

    Raises:
        DataError: no scene holds data, or the DEM / label raster covers none of the imagery.
    """
    imagery = footprints(images, 'images', crs, progress, footprint_warn)
    if imagery.is_empty:
        raise DataError('data.init_args.images: no scene holds a valid pixel (all nodata)')
    usable = imagery
    summary: dict[str, Any] = {'imagery_area': imagery.area}
    if dems:
        dem = footprints(dems, 'dem', crs, progress, footprint_warn)
        covered = _coverage(imagery, dem)
        summary['dem_coverage'] = covered
        if covered <= 0:
            raise DataError(
                f'data.init_args.dem: the DEM ({", ".join(Path(d.path).name for d in dems)}) covers none of '
                f'the imagery; give a DEM over the same area (any CRS and resolution)'
            )
        if covered < 0.999:
            warn(
                f'data.init_args.dem: the DEM covers {100 * covered:.1f} % of the imagery with data; tiles are '
                f'taken only where imagery and DEM both exist'
            )
        usable = usable.intersection(dem)
    if label_rasters:
        cover = footprints(label_rasters, 'labels', crs, progress, footprint_warn)
        covered = _coverage(imagery, cover)
        if covered <= 0:
            raise DataError('data.init_args.labels: the label raster covers none of the imagery')
        if covered < 0.999:
            warn(
                f'data.init_args.labels: the label raster covers {100 * covered:.1f} % of the imagery with data; '
                f'tiles are taken only where it exists'
            )
        usable = usable.intersection(cover)
    return imagery, shapely.make_valid(usable), summary


def landslide_polygons(
    label_files: Sequence[str],
    imagery: Any,
    usable: Any,
    crs: CRS,
    read: dict[str, Any],
    info: Log,
    warn: Log,
) -> tuple[list[Any], dict[str, Any]]:
    """The landslide polygons of the label files, clipped to the usable area.

    Args:
        label_files: the polygon files.
        imagery: the imagery's footprint.
        usable: the usable area.
        crs: the grid's CRS.
        read: ``layer``, ``labels_crs`` and ``invalid`` of :func:`read_landslide_polygons`.
        info: where to log.
        warn: where to warn.

    Returns:
        ``(polygons, summary entries)``.

    Raises:
        DataError: no polygon overlaps the imagery, or none the usable area.
    """
    frames = [read_landslide_polygons(p, crs, read['layer'], read['labels_crs'], read['invalid'], info, warn)
              for p in label_files]  # fmt: skip
    polygons = gpd.GeoDataFrame(
        {'feature': np.concatenate([f['feature'].values for f in frames])},
        geometry=[g for f in frames for g in f.geometry], crs=crs,
    )  # fmt: skip
    inside = polygons.intersects(imagery).values
    names = ', '.join(Path(p).name for p in label_files)
    if not inside.any():
        xmin, ymin, xmax, ymax = polygons.total_bounds
        ixmin, iymin, ixmax, iymax = imagery.bounds
        raise DataError(
            f'data.init_args.labels: none of the {len(polygons)} polygons of {names} overlaps the imagery '
            f'(polygons span x {xmin:.1f}..{xmax:.1f}, y {ymin:.1f}..{ymax:.1f}; imagery x {ixmin:.1f}..'
            f'{ixmax:.1f}, y {iymin:.1f}..{iymax:.1f} in {_crs_name(crs)}): wrong file, or a wrong CRS '
            f'(labels_crs)?'
        )
    if not inside.all():
        warn(
            f'data.init_args.labels: {int((~inside).sum())} of {len(polygons)} polygons of {names} lie outside '
            f'all imagery with data; they are ignored'
        )
    polygons = polygons[inside]
    crossing = ~polygons.within(imagery).values
    if crossing.any():
        info(f'labels: {int(crossing.sum())} polygon(s) cross the edge of the imagery with data: clipped')
    clipped = [_polygonal_part(g) for g in polygons.geometry.intersection(usable)]
    landslides = [g for g in clipped if not g.is_empty]
    if not landslides:
        raise DataError(
            'data.init_args.labels: no landslide polygon overlaps the area where every input (imagery, DEM) has data'
        )
    summary = {'polygons': len(inside), 'polygons_inside': int(inside.sum()),
               'landslide_area': float(sum(g.area for g in landslides))}  # fmt: skip
    return landslides, summary


def scene_windows(index: gpd.GeoDataFrame, grid: PixelGrid) -> list[SceneWindow]:
    """Each scene's window on the grid in whole cells (from a torchgeo dataset's ``index``)."""
    c = grid.cell
    windows = []
    for k, path in enumerate(index.filepath):
        bxmin, bymin, bxmax, bymax = index.geometry.iloc[k].bounds
        col0 = max(0, math.floor(round((bxmin - grid.left) / grid.res[0], 6) / c) * c)
        col1 = min(grid.width, math.ceil(round((bxmax - grid.left) / grid.res[0], 6) / c) * c)
        row0 = max(0, math.floor(round((grid.top - bymax) / grid.res[1], 6) / c) * c)
        row1 = min(grid.height, math.ceil(round((grid.top - bymin) / grid.res[1], 6) / c) * c)
        windows.append((path, row0, row1, col0, col1))
    return windows


def _target_block(
    vector: VectorDataset, label_raster: RasterDataset | None, label_nodata: float | None, query: Any, h: int, w: int
) -> np.ndarray:
    """``(h, w)`` uint8 targets of one block: NODATA outside the usable area, else BACKGROUND or LANDSLIDE."""
    try:
        target = vector[query]['mask'].numpy().astype(np.uint8)
    except IndexError:
        target = np.zeros((h, w), np.uint8)
    if label_raster is not None:
        try:
            lab = label_raster[query]['mask'].numpy()
        except IndexError:
            lab = np.zeros((h, w), np.int64)
        hit = (lab > 0) if label_nodata is None else (lab > 0) & (lab != label_nodata)
        target = np.where(target > 0, np.where(hit, LANDSLIDE, BACKGROUND), NODATA).astype(np.uint8)
    return target


def write_targets(
    folder: Path,
    grid: PixelGrid,
    windows: Sequence[SceneWindow],
    vector: VectorDataset,
    label_raster: RasterDataset | None,
    label_nodata: float | None,
    progress: bool,
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, int]]:
    """Rasterize the targets of every scene (torchgeo) block by block into tiled GeoTIFFs; count per cell.

    Args:
        folder: where the ``target_<k>.tif`` files are written.
        grid: the pixel grid.
        windows: the scenes' windows (:func:`scene_windows`).
        vector: usable area (BACKGROUND) and landslides (LANDSLIDE) as a torchgeo VectorDataset on the grid.
        label_raster: the label raster(s) on the grid, or None.
        label_nodata: the label raster's nodata value.
        progress: show a progress bar.

    Returns:
        ``(file names, usable pixels per cell (R, C), landslide pixels per cell (R, C), landslide pixels per
        scene file name)``.
    """
    from tqdm.auto import tqdm

    rows, cols = grid.shape_cells
    valid = np.zeros((rows, cols), np.int32)
    landslide = np.zeros((rows, cols), np.int32)
    c = grid.cell
    block = max(c, (2048 // c) * c)
    names: list[str] = []
    per_scene: dict[str, int] = {}
    total = sum(math.ceil((r1 - r0) / block) * math.ceil((c1 - c0) / block) for _, r0, r1, c0, c1 in windows)
    bar = tqdm(total=total, desc='rasterizing labels', disable=not progress, leave=False)
    for k, (path, row0, row1, col0, col1) in enumerate(windows):
        name = f'target_{k:04d}.tif'
        names.append(name)
        profile = {
            'driver': 'GTiff', 'width': col1 - col0, 'height': row1 - row0, 'count': 1, 'dtype': 'uint8',
            'crs': rasterio.crs.CRS.from_wkt(grid.crs_wkt), 'compress': 'deflate', 'tiled': True,
            'blockxsize': 256, 'blockysize': 256,
            'transform': Affine(grid.res[0], 0, grid.left + col0 * grid.res[0], 0, -grid.res[1],
                                grid.top - row0 * grid.res[1]),
        }  # fmt: skip
        with rasterio.open(folder / name, 'w', **profile) as dst:
            for r in range(row0, row1, block):
                for q in range(col0, col1, block):
                    h, w = min(block, row1 - r), min(block, col1 - q)
                    target = _target_block(vector, label_raster, label_nodata, grid.geoslice(r, q, h, w), h, w)
                    dst.write(target, 1, window=Window(q - col0, r - row0, w, h))
                    cells = target.reshape(h // c, c, w // c, c)
                    rs, cs = slice(r // c, (r + h) // c), slice(q // c, (q + w) // c)
                    np.maximum(valid[rs, cs], (cells > 0).sum((1, 3)), out=valid[rs, cs])
                    np.maximum(landslide[rs, cs], (cells == LANDSLIDE).sum((1, 3)), out=landslide[rs, cs])
                    bar.update()
        per_scene[os.path.basename(path)] = int(landslide[row0 // c : row1 // c, col0 // c : col1 // c].sum())
    bar.close()
    return names, valid, landslide, per_scene
