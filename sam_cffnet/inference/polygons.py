"""Landslide polygons of whole-scene maps: vectorized block by block, merged across block seams, written in the CRS.

Each block's mask is vectorized in scene pixel coordinates (exact integers, 4-connectivity, so the polygons of two
blocks meet exactly along the seam). Polygons that touch an inner block edge are kept apart and merged with
``shapely.unary_union`` once the scene is complete, so a landslide crossing block (or process) seams is one
polygon. Pixel coordinates become CRS coordinates through the scene's affine transform at the end.

Output: GeoPackage (``.gpkg``) or GeoJSON (``.geojson``/``.json``), one layer named after the output file, fields
``id``, ``area`` (CRS units squared), ``area_px`` and, for projected CRSs, ``area_km2``. A scene without a CRS (a
PNG) has pixel coordinates: its polygons are written to GeoPackage with a local engineering CRS named
``pixel grid of <scene>`` (unit: pixel), so no GIS reads them as longitude/latitude; GeoJSON is refused for it
(RFC 7946 defines GeoJSON coordinates as longitude/latitude).
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .raster import open_raster, write_error
from .windows import Block

__all__ = [
    'POLYGON_FORMATS',
    'VECTOR_DRIVERS',
    'check_polygon_output',
    'load_block_polygons',
    'mask_polygons',
    'merge_polygons',
    'pixel_grid_crs',
    'save_block_polygons',
    'split_at_seams',
    'vector_driver',
    'vectorize_mask',
    'write_polygons',
]

PathLike = str | os.PathLike[str]
VECTOR_DRIVERS = {'.gpkg': 'GPKG', '.geojson': 'GeoJSON', '.json': 'GeoJSON'}
#: Bare format names accepted by ``--polygons`` with ``--output-dir`` (one file per scene).
POLYGON_FORMATS = {'gpkg': '.gpkg', 'geojson': '.geojson'}


def vector_driver(path: PathLike) -> str:
    """The OGR driver for a polygon file (by extension).

    Raises:
        ConfigError: not ``.gpkg``, ``.geojson`` or ``.json``.
    """
    driver = VECTOR_DRIVERS.get(Path(path).suffix.lower())
    if driver is None:
        raise ConfigError(f'{path}: polygons are written as .gpkg (GeoPackage) or .geojson/.json (GeoJSON)')
    return driver


def check_polygon_output(path: PathLike, scene_name: str, has_crs: bool) -> None:
    """Refuse what cannot be written correctly, before any work.

    Raises:
        ConfigError: unknown extension, or GeoJSON for a scene without a CRS.
    """
    if vector_driver(path) == 'GeoJSON' and not has_crs:
        raise ConfigError(
            f'{path}: {scene_name} has no CRS (pixel coordinates), and GeoJSON coordinates are read as longitude/'
            f'latitude by every GIS (RFC 7946); write the polygons as .gpkg instead (GeoPackage with a local '
            f'"pixel grid" CRS), or give a georeferenced scene'
        )


def pixel_grid_crs(scene_name: str) -> str:
    """A local engineering CRS (WKT) for pixel coordinates: x = column, y = row, unit = pixel."""
    name = f'pixel grid of {scene_name} (x = column, y = row)'.replace('"', "'")
    return (
        f'ENGCRS["{name}",EDATUM["image pixel grid"],CS[Cartesian,2],'
        'AXIS["x (column)",east,ORDER[1],LENGTHUNIT["pixel",1]],'
        'AXIS["y (row)",south,ORDER[2],LENGTHUNIT["pixel",1]]]'
    )


def mask_polygons(mask: np.ndarray, y0: int = 0, x0: int = 0) -> list[Any]:
    """Polygons of the ``True`` pixels of a mask, in scene pixel coordinates (4-connectivity).

    Args:
        mask: ``(h, w)`` bool (landslide pixels).
        y0: scene row of the mask's first row.
        x0: scene column of the mask's first column.

    Returns:
        shapely Polygons (x = column, y = row).
    """
    from affine import Affine
    from rasterio.features import shapes
    from shapely.geometry import shape

    if not mask.any():
        return []
    m = mask.astype(np.uint8)
    return [shape(g) for g, _ in shapes(m, mask=mask, connectivity=4, transform=Affine.translation(x0, y0))]


def split_at_seams(polygons: Sequence[Any], block: Block, height: int, width: int) -> tuple[list[Any], list[Any]]:
    """Split a block's polygons into those inside it and those touching an inner edge (to be merged later).

    Args:
        polygons: the block's polygons (scene pixel coordinates).
        block: the block.
        height: scene height (edges on the scene border are not seams).
        width: scene width.

    Returns:
        ``(interior, seam)``.
    """
    interior, seam = [], []
    for p in polygons:
        x0, y0, x1, y1 = p.bounds
        touches = (block.x0 > 0 and x0 <= block.x0) or (block.y0 > 0 and y0 <= block.y0)
        touches = touches or (block.x1 < width and x1 >= block.x1) or (block.y1 < height and y1 >= block.y1)
        (seam if touches else interior).append(p)
    return interior, seam


def _pack(polygons: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    import shapely

    wkb = [bytes(b) for b in shapely.to_wkb(list(polygons))] if polygons else []
    offsets = np.cumsum([0, *[len(b) for b in wkb]]).astype(np.int64)
    return np.frombuffer(b''.join(wkb), np.uint8), offsets


def _unpack(buffer: np.ndarray, offsets: np.ndarray) -> list[Any]:
    import shapely

    raw = buffer.tobytes()
    return list(shapely.from_wkb([raw[a:b] for a, b in itertools.pairwise(offsets)]))


def save_block_polygons(path: PathLike, interior: Sequence[Any], seam: Sequence[Any]) -> None:
    """Store a block's polygons (WKB in a ``.npz``, no pickle), atomically.

    Raises:
        OutputWriteError: the file could not be written.
    """
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    (ib, io), (sb, so) = _pack(interior), _pack(seam)
    try:
        with open(tmp, 'wb') as fh:
            np.savez(fh, interior=ib, interior_offsets=io, seam=sb, seam_offsets=so)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_error(err, path) from err


def load_block_polygons(path: PathLike) -> tuple[list[Any], list[Any]]:
    """Inverse of :func:`save_block_polygons`: ``(interior, seam)``."""
    with np.load(path, allow_pickle=False) as data:
        return (
            _unpack(data['interior'], data['interior_offsets']),
            _unpack(data['seam'], data['seam_offsets']),
        )


def merge_polygons(interior: Sequence[Any], seam: Sequence[Any]) -> list[Any]:
    """All polygons of a scene: the interior ones and the union of the seam ones, sorted top-down, left-right."""
    import shapely

    out = list(interior)
    if seam:
        merged = shapely.unary_union(list(seam))
        out += [g for g in getattr(merged, 'geoms', [merged]) if not g.is_empty]
    out.sort(key=lambda p: (p.bounds[1], p.bounds[0], p.bounds[3], p.bounds[2]))
    return out


def write_polygons(
    path: PathLike,
    polygons: Sequence[Any],
    transform: Sequence[float],
    crs_wkt: str | None,
    pixel_area: float,
    min_area: float = 0.0,
    layer: str | None = None,
    square_metres_per_unit: float | None = None,
    scene_name: str = 'the scene',
) -> tuple[int, float]:
    """Write polygons given in pixel coordinates, in the scene's CRS.

    Args:
        path: ``.gpkg`` or ``.geojson``/``.json`` file (replaced if it exists).
        polygons: shapely Polygons, x = column, y = row.
        transform: affine coefficients ``(a, b, c, d, e, f)`` pixel -> CRS.
        crs_wkt: the scene's CRS; ``None``: a local "pixel grid" CRS is written (GeoPackage only).
        pixel_area: CRS units squared per pixel (1 without a CRS).
        min_area: drop polygons smaller than this (CRS units squared; pixels without a CRS).
        layer: layer name (default: the file's stem).
        square_metres_per_unit: for projected CRSs, m^2 per squared CRS unit (adds ``area_km2``).
        scene_name: for the pixel-grid CRS name.

    Returns:
        ``(number of polygons written, their total area in CRS units squared)``.
    """
    import pyogrio
    import shapely
    import shapely.affinity

    path = Path(path)
    driver = VECTOR_DRIVERS.get(path.suffix.lower(), 'GPKG')
    keep = [p for p in polygons if not p.is_empty and p.area * pixel_area >= min_area]
    a, b, c, d, e, f = transform
    geoms = [shapely.affinity.affine_transform(p, [a, b, d, e, c, f]) for p in keep]
    area_px = np.array([p.area for p in keep], dtype=np.float64)
    fields: dict[str, np.ndarray] = {
        'id': np.arange(1, len(keep) + 1, dtype=np.int64),
        'area': area_px * pixel_area,
        'area_px': area_px,
    }
    if square_metres_per_unit is not None:
        fields['area_km2'] = area_px * pixel_area * square_metres_per_unit / 1e6
    crs = crs_wkt if crs_wkt is not None else pixel_grid_crs(scene_name)
    path.unlink(missing_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)
            pyogrio.raw.write(
                path, geometry=np.array(shapely.to_wkb(geoms) if geoms else [], dtype=object),
                field_data=list(fields.values()), fields=list(fields), geometry_type='Polygon', crs=crs,
                driver=driver, layer=layer or path.stem,
            )  # fmt: skip
    except Exception as err:
        path.unlink(missing_ok=True)
        raise write_error(err, path) from err
    return len(keep), float(fields['area'].sum())


def vectorize_mask(
    mask_path: PathLike, out_path: PathLike, band: int = 1, min_area: float = 0.0, block: int = 1024
) -> int:
    """Polygons of the landslide pixels (value 1) of a mask raster, block by block, merged across block borders.

    Args:
        mask_path: a uint8 raster with 1 = landslide (e.g. band 2 of a ``map`` output).
        out_path: ``.gpkg`` / ``.geojson`` / ``.json`` file.
        band: band of the mask.
        min_area: minimum polygon area (CRS units squared; pixels when the raster has no CRS).
        block: block edge of the vectorization.

    Returns:
        Number of polygons written.
    """
    from rasterio.windows import Window

    out_path = Path(out_path)
    vector_driver(out_path)
    with open_raster(mask_path) as src:
        has_crs = src.crs is not None
        check_polygon_output(out_path, Path(mask_path).name, has_crs)
        height, width = src.height, src.width
        blocks = [
            Block(0, i, j, y, min(y + block, height), x, min(x + block, width), ())
            for i, y in enumerate(range(0, height, block))
            for j, x in enumerate(range(0, width, block))
        ]
        interior: list[Any] = []
        seam: list[Any] = []
        for blk in blocks:
            h, w = blk.shape
            m = src.read(band, window=Window(blk.x0, blk.y0, w, h)) == 1
            i, s = split_at_seams(mask_polygons(m, blk.y0, blk.x0), blk, height, width)
            interior += i
            seam += s
        t = src.transform
        crs_wkt = src.crs.to_wkt() if has_crs else None
        pixel_area = abs(t.determinant) if has_crs else 1.0
        sq = float(src.crs.linear_units_factor[1]) ** 2 if has_crs and src.crs.is_projected else None
    count, _ = write_polygons(
        out_path, merge_polygons(interior, seam), (t.a, t.b, t.c, t.d, t.e, t.f), crs_wkt, pixel_area, min_area,
        square_metres_per_unit=sq, scene_name=Path(mask_path).name,
    )  # fmt: skip
    return count
