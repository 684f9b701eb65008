"""The inputs of ``evaluate``: a map and a reference inventory per scene, as rasters or polygons, in any CRS.

A **layer** is one side of the comparison: a raster (``map``'s COG, or any label raster) or a polygon file
(GeoPackage, GeoJSON, Shapefile). :func:`open_layer` reads its header (and the polygons of a polygon file) and
checks it; :func:`align` puts two layers and an optional area of interest in one coordinate system and refuses,
before any work, what cannot be compared: one side with a CRS and the other without, extents that do not overlap,
an empty inventory.

Which pixels of a raster are landslide:

* ``map``'s COG: band ``landslide_mask`` = 1; a COG written with ``--no-mask``: ``landslide_probability`` x 1/254 >
  the threshold recorded in its tags (or ``--threshold``);
* any other raster: band 1 > 0. Its nodata (value, alpha band or internal mask) is left out of every score.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, MissingFileError
from ..inference.raster import open_raster

__all__ = ['POLYGON_SUFFIXES', 'Alignment', 'Layer', 'align', 'open_layer', 'read_polygons']

PathLike = str | os.PathLike[str]
POLYGON_SUFFIXES = ('.gpkg', '.geojson', '.json', '.shp', '.fgb')


@dataclass
class Layer:
    """One side of the comparison (a map or a reference).

    Attributes:
        path: the file.
        role: ``'--input'``, ``'--reference'`` or ``'--aoi'`` (for messages).
        kind: ``'raster'`` or ``'polygons'``.
        crs: a ``rasterio.crs.CRS``, or ``None`` (pixel coordinates: a PNG, a polygon file in our "pixel grid" CRS).
        bounds: ``(x0, y0, x1, y1)`` in ``crs``.
        band: raster band holding the labels (1-based).
        scale: raw value x scale is compared with ``threshold`` (probability bands); ``None``: see ``equals``.
        threshold: the probability threshold of a probability band.
        equals: the landslide value of a mask band (``map``'s COG: 1); ``None``: any value > 0.
        geometries: the polygons (in ``crs``) of a polygon file.
        height: raster rows.
        width: raster columns.
        transform: raster transform.
    """

    path: Path
    role: str
    kind: str
    crs: Any
    bounds: tuple[float, float, float, float]
    band: int = 1
    scale: float | None = None
    threshold: float = 0.5
    equals: int | None = None
    geometries: list[Any] = field(default_factory=list)
    height: int = 0
    width: int = 0
    transform: Any = None

    def landslide(self, values: np.ndarray) -> np.ndarray:
        """Landslide pixels of raw raster values ``(h, w)`` -> bool ``(h, w)``."""
        if self.scale is not None:
            return values * self.scale > self.threshold
        if self.equals is not None:
            return values == self.equals
        return values > 0


def _pixel_grid(crs: Any) -> bool:
    """Our polygons of a scene without CRS carry a local "pixel grid of <scene>" CRS: pixel coordinates."""
    return crs is not None and 'pixel grid of' in crs.to_wkt()


def read_polygons(path: PathLike, role: str) -> tuple[list[Any], Any]:
    """Polygons of a vector file and its CRS (``None`` for none or our pixel-grid CRS).

    Raises:
        DataError: unreadable, or geometries that are not polygons.
    """
    import geopandas as gpd
    import shapely
    from rasterio.crs import CRS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            frame = gpd.read_file(path)
    except Exception as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(
            f'{role} {path}: not a readable polygon file (GeoPackage, GeoJSON, Shapefile): {detail}'
        ) from err
    geoms = [g for g in frame.geometry if g is not None and not g.is_empty]
    kinds = {g.geom_type for g in geoms} - {'Polygon', 'MultiPolygon'}
    if kinds:
        raise DataError(f'{role} {path}: holds {", ".join(sorted(kinds))} geometries, expected polygons')
    geoms = [shapely.make_valid(g) if not g.is_valid else g for g in geoms]
    geoms = [shapely.union_all([p for p in getattr(g, 'geoms', [g]) if p.geom_type in ('Polygon', 'MultiPolygon')])
             for g in geoms]  # fmt: skip
    crs = CRS.from_wkt(frame.crs.to_wkt()) if frame.crs is not None else None
    return [g for g in geoms if not g.is_empty], (None if _pixel_grid(crs) else crs)


def open_layer(path: PathLike, role: str, threshold: float | None = None) -> Layer:
    """Read a layer's header (and the polygons of a polygon file).

    Args:
        path: raster or polygon file.
        role: the option that named it (for messages).
        threshold: probability threshold for a probability-only map (default: the one recorded in the COG).

    Raises:
        MissingFileError: no such file.
        DataError: not a raster nor a polygon file.
    """
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f'{role} {p}: no such file (expected a raster or a polygon file)')
    if p.suffix.lower() in POLYGON_SUFFIXES:
        geoms, crs = read_polygons(p, role)
        if geoms:
            import shapely

            bounds = tuple(float(v) for v in shapely.total_bounds(geoms))
        else:
            bounds = (np.nan,) * 4
        return Layer(p, role, 'polygons', crs, bounds, geometries=geoms)  # type: ignore[arg-type]
    try:
        src = open_raster(p)
    except Exception as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(
            f'{role} {p}: neither a raster nor a polygon file ({", ".join(POLYGON_SUFFIXES)}): {detail}'
        ) from err
    with src:
        names = list(src.descriptions)
        layer = Layer(p, role, 'raster', src.crs if src.crs else None, tuple(src.bounds), height=src.height,
                      width=src.width, transform=src.transform)  # fmt: skip
        if 'landslide_mask' in names:
            layer.band, layer.equals = names.index('landslide_mask') + 1, 1
        elif 'landslide_probability' in names:
            layer.band = names.index('landslide_probability') + 1
            layer.scale = src.scales[layer.band - 1] or 1 / 254
            recorded = src.tags().get('threshold')
            layer.threshold = float(threshold if threshold is not None else recorded if recorded else 0.5)
    return layer


@dataclass
class Alignment:
    """Two layers (and an area of interest) in one coordinate system.

    Attributes:
        crs: the common CRS (``None``: pixel coordinates).
        grid: the raster whose pixel grid the pixel scores use (the map if it is a raster, else the reference if
            it is one), or ``None`` (two polygon files: object scores only).
        domain: the evaluated area (the grid's extent, intersected with the area of interest), a shapely geometry,
            or ``None`` (everywhere).
        aoi: the area of interest in ``crs``, or ``None``.
    """

    crs: Any
    grid: Layer | None
    domain: Any
    aoi: Any


def _to_crs(geoms: list[Any], src: Any, dst: Any) -> list[Any]:
    if not geoms or src is None or dst is None or src == dst:
        return geoms
    import geopandas as gpd

    return list(gpd.GeoSeries(geoms, crs=src.to_wkt()).to_crs(dst.to_wkt()))


def _bounds_in(layer: Layer, crs: Any) -> tuple[float, float, float, float]:
    if layer.crs is None or crs is None or layer.crs == crs:
        return layer.bounds
    from rasterio.warp import transform_bounds

    return tuple(transform_bounds(layer.crs, crs, *layer.bounds, densify_pts=21))  # type: ignore[return-value]


def align(mapped: Layer, reference: Layer, aoi: Layer | None = None) -> Alignment:
    """Check that the layers can be compared and bring polygon layers into the common CRS (in place).

    Raises:
        DataError: an empty inventory; one layer with a CRS and the other without; extents that do not overlap.
    """
    import shapely

    if reference.kind == 'polygons' and not reference.geometries:
        raise DataError(f'--reference {reference.path}: the inventory holds no polygon (an empty inventory)')
    if aoi is not None and not aoi.geometries:
        raise DataError(f'--aoi {aoi.path}: holds no polygon')
    layers = [mapped, reference] + ([aoi] if aoi is not None else [])
    with_crs = [x for x in layers if x.crs is not None]
    if with_crs and len(with_crs) != len(layers):
        bare = next(x for x in layers if x.crs is None)
        raise DataError(
            f'{bare.role} {bare.path} has no CRS (pixel coordinates) but {with_crs[0].role} {with_crs[0].path} is in '
            f'{with_crs[0].crs.to_string()}; give both in a CRS (or both in the same pixel grid)'
        )
    grid = mapped if mapped.kind == 'raster' else reference if reference.kind == 'raster' else None
    crs = (grid or mapped if mapped.crs is not None else reference).crs
    for layer in layers:
        if layer.kind == 'polygons' and layer.crs != crs:
            layer.geometries = _to_crs(layer.geometries, layer.crs, crs)
            layer.bounds = tuple(float(v) for v in shapely.total_bounds(layer.geometries)) if layer.geometries \
                else layer.bounds  # fmt: skip
            layer.crs = crs
    if grid is None and mapped.kind == 'raster' and reference.kind == 'raster':
        grid = mapped
    boxes = {x.role: shapely.box(*_bounds_in(x, crs)) for x in layers if not np.isnan(x.bounds[0])}
    if mapped.role in boxes and reference.role in boxes:
        a, b = boxes[mapped.role], boxes[reference.role]
        if not a.intersects(b) or (a.intersection(b).area <= 0 and a.area > 0 and b.area > 0):
            raise DataError(
                f'--input {mapped.path} (bounds {_fmt(a.bounds)}) and --reference {reference.path} (bounds '
                f'{_fmt(b.bounds)}) do not overlap in {crs.to_string() if crs is not None else "pixel coordinates"}; '
                f'wrong file or wrong CRS?'
            )
    aoi_geom = shapely.union_all(aoi.geometries) if aoi is not None else None
    domain = shapely.box(*_bounds_in(grid, crs)) if grid is not None else None
    if aoi_geom is not None:
        domain = aoi_geom if domain is None else domain.intersection(aoi_geom)
        if domain.is_empty:
            raise DataError(f'--aoi {aoi.path} does not overlap --input {mapped.path}')  # type: ignore[union-attr]
    if grid is None and mapped.kind != 'raster' and reference.kind != 'raster':
        pass
    elif (
        mapped.kind == 'raster'
        and reference.kind == 'raster'
        and (mapped.crs is None)
        and ((mapped.height, mapped.width) != (reference.height, reference.width))
    ):
        raise DataError(
            f'--input {mapped.path} ({mapped.height} x {mapped.width} px) and --reference {reference.path} '
            f'({reference.height} x {reference.width} px) have no CRS and different sizes: cannot be aligned'
        )
    return Alignment(crs, grid, domain, aoi_geom)


def _fmt(bounds: tuple[float, ...]) -> str:
    return '(' + ', '.join(f'{v:.6g}' for v in bounds) + ')'


def check_threshold(value: float | None) -> None:
    """Refuse a probability threshold outside (0, 1)."""
    if value is not None and not 0 < value < 1:
        raise ConfigError(f'--threshold {value}: expected a probability threshold in (0, 1)')


def raster_polygons(layer: Layer, block: int = 1024) -> list[Any]:
    """Polygons of a raster layer's landslide pixels (nodata excluded), in the layer's CRS coordinates.

    Read block by block and merged across block seams (memory: one block of pixels, plus the polygons).
    """
    import shapely.affinity
    from rasterio.windows import Window

    from ..inference.polygons import mask_polygons, merge_polygons, split_at_seams

    interior: list[Any] = []
    seam: list[Any] = []
    with open_raster(layer.path) as src:
        h_all, w_all = src.height, src.width
        for y in range(0, h_all, block):
            for x in range(0, w_all, block):
                blk = SimpleNamespace(y0=y, y1=min(y + block, h_all), x0=x, x1=min(x + block, w_all))
                h, w = blk.y1 - y, blk.x1 - x
                win = Window(x, y, w, h)
                m = layer.landslide(src.read(layer.band, window=win)) & (src.read_masks(layer.band, window=win) > 0)
                a, b = split_at_seams(mask_polygons(m, y, x), blk, h_all, w_all)  # type: ignore[arg-type]
                interior += a
                seam += b
        t = src.transform
    return [
        shapely.affinity.affine_transform(p, [t.a, t.b, t.d, t.e, t.c, t.f]) for p in merge_polygons(interior, seam)
    ]
