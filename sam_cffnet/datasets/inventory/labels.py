"""Labels: reading and checking landslide polygons; CRS names and units for messages."""

from __future__ import annotations

from typing import Any, Literal

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS

from ...errors import DataError
from ._log import Log, _info, _warn

#: Label files with these suffixes are label rasters; anything else is read as a vector file.
RASTER_SUFFIXES = ('.tif', '.tiff', '.vrt', '.img', '.jp2')

_POLYGONAL = ('Polygon', 'MultiPolygon')


def _polygonal_part(geom: Any) -> Any:
    """The polygons of a geometry (collections from ``make_valid`` keep only their polygonal parts)."""
    if geom is None or geom.is_empty:
        return shapely.Polygon()
    if geom.geom_type in _POLYGONAL:
        return geom
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in _POLYGONAL]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def read_landslide_polygons(
    path: str,
    crs: CRS,
    layer: str | int | None = None,
    labels_crs: str | None = None,
    invalid: Literal['repair', 'error'] = 'repair',
    info: Log = _info,
    warn: Log = _warn,
) -> gpd.GeoDataFrame:
    """Read a landslide inventory and check it; returns its polygons in ``crs``.

    Checks, in order: readable; not empty; has a CRS (or ``labels_crs``); null/empty geometries dropped (warned);
    only polygons (points or lines stop with an error: buffer them into outlines first); invalid geometries
    repaired with ``shapely.make_valid`` (warned) or refused (``invalid='error'``); reprojected to ``crs``
    (logged).

    Args:
        path: Shapefile, GeoPackage, GeoJSON or any vector format GDAL reads.
        crs: the CRS of the imagery grid.
        layer: the layer of a multi-layer file (default: the first).
        labels_crs: the file's CRS when it declares none (or declares a wrong one).
        invalid: ``'repair'`` or ``'error'``.
        info: where to log what was done.
        warn: where to warn about the input.

    Returns:
        GeoDataFrame with ``feature`` (row number in the file) and ``geometry`` (valid (multi)polygons in ``crs``).

    Raises:
        DataError: unreadable, empty, no CRS, non-polygon geometries, invalid geometries with ``invalid='error'``.
    """
    where = f'data.init_args.labels: {path}'
    try:
        frame = gpd.read_file(path, layer=layer)
    except Exception as err:  # pyogrio raises its own DataSourceError, ValueError, ...
        raise DataError(
            f'{where} cannot be read as a vector file ({err}); expected landslide polygons in a Shapefile, '
            f'GeoPackage or GeoJSON (or a label GeoTIFF ending in {", ".join(RASTER_SUFFIXES)})'
        ) from err
    if len(frame) == 0:
        raise DataError(f'{where} holds no features (an empty label file); expected landslide polygons')
    if labels_crs:
        if frame.crs is not None and CRS.from_user_input(labels_crs) != frame.crs:
            warn(f'{where} declares {frame.crs.to_string()}; labels_crs={labels_crs} is used instead')
        frame = frame.set_crs(labels_crs, allow_override=True)
    elif frame.crs is None:
        raise DataError(
            f'{where} has no CRS (a Shapefile without its .prj?); set data.init_args.labels_crs (e.g. EPSG:4326)'
        )
    frame = gpd.GeoDataFrame({'feature': np.arange(len(frame))}, geometry=frame.geometry.values, crs=frame.crs)
    empty = frame.geometry.isna() | frame.geometry.is_empty
    if empty.any():
        warn(f'{where}: {int(empty.sum())} of {len(frame)} features have no geometry; they are ignored')
        frame = frame[~empty]
        if len(frame) == 0:
            raise DataError(f'{where}: no feature has a geometry; expected landslide polygons')
    geoms = frame.geometry.values
    kinds = np.array([g.geom_type for g in geoms])
    collections = kinds == 'GeometryCollection'
    if collections.any():
        geoms = np.array([_polygonal_part(g) if c else g for g, c in zip(geoms, collections, strict=True)])
        kinds = np.array([g.geom_type for g in geoms])
    wrong = ~np.isin(kinds, _POLYGONAL) | np.array([g.is_empty for g in geoms])
    if wrong.any():
        found = ', '.join(f'{n} {k}' for k, n in zip(*np.unique(kinds[wrong], return_counts=True), strict=True))
        raise DataError(
            f'{where}: {int(wrong.sum())} of {len(frame)} features are not polygons ({found}; e.g. feature '
            f'#{int(frame["feature"].values[wrong][0])}); landslide labels must be polygons outlining each landslide '
            f'(buffer points or lines into polygons first, e.g. geopandas `frame.buffer(10)` in a metric CRS)'
        )
    valid = shapely.is_valid(geoms)
    if not valid.all():
        bad = np.flatnonzero(~valid)
        first = int(frame['feature'].values[bad[0]])
        reason = shapely.is_valid_reason(geoms[bad[0]])
        if invalid == 'error':
            raise DataError(
                f'{where}: {len(bad)} of {len(frame)} polygons are invalid (feature #{first}: {reason}); repair them '
                f'(e.g. QGIS "Fix geometries") or set data.init_args.invalid_geometries: repair'
            )
        geoms = np.array(
            [_polygonal_part(shapely.make_valid(g)) if not ok else g for g, ok in zip(geoms, valid, strict=True)]
        )
        lost = np.array([g.is_empty for g in geoms])
        warn(
            f'{where}: repaired {len(bad)} invalid polygon(s) with shapely.make_valid (feature #{first}: {reason})'
            + (f'; {int(lost.sum())} had no area left and are ignored' if lost.any() else '')
        )
        frame = frame[~lost]
        geoms = geoms[~lost]
    frame = gpd.GeoDataFrame({'feature': frame['feature'].values}, geometry=list(geoms), crs=frame.crs)
    _check_coordinates(frame, where, crs, declared=labels_crs is not None)
    if CRS.from_user_input(frame.crs) != crs:
        info(f'labels: reprojected {len(frame)} polygons of {path} from {frame.crs.to_string()} to {_crs_name(crs)}')
        source = _crs_name(CRS.from_user_input(frame.crs))
        frame = frame.to_crs(crs)
        if not np.isfinite(frame.total_bounds).all():
            raise DataError(
                f'{where}: the polygons cannot be reprojected from {source} to the imagery CRS {_crs_name(crs)} '
                f'(coordinates outside the area of {source}); set data.init_args.labels_crs to the CRS they are in'
            )
        fixed = ~frame.geometry.is_valid
        if fixed.any():
            frame.loc[fixed, 'geometry'] = [_polygonal_part(shapely.make_valid(g)) for g in frame.geometry[fixed]]
    return frame


def _check_coordinates(frame: gpd.GeoDataFrame, where: str, crs: CRS, declared: bool) -> None:
    """Refuse coordinates that cannot be degrees of the file's geographic CRS: lat/lon swapped, or projected.

    Args:
        frame: the polygons in the file's CRS.
        where: the setting and file, for the message.
        crs: the imagery's CRS (named in the message).
        declared: the file's CRS comes from ``labels_crs``.

    Raises:
        DataError: x beyond +-180 or y beyond +-90 in a geographic CRS.
    """
    source = CRS.from_user_input(frame.crs)
    if not source.is_geographic:
        return
    xmin, ymin, xmax, ymax = (float(v) for v in frame.total_bounds)
    if -180 <= xmin and xmax <= 180 and -90 <= ymin and ymax <= 90:
        return
    span = f'x {xmin:.6g}..{xmax:.6g}, y {ymin:.6g}..{ymax:.6g}'
    name = _crs_name(source)
    if -90 <= xmin and xmax <= 90 and -180 <= ymin and ymax <= 180:
        raise DataError(
            f'{where}: the coordinates look like latitude/longitude swapped ({span} in {name}: y beyond +-90 is no '
            f'latitude); write the polygons with longitude as x and latitude as y'
        )
    said = f'data.init_args.labels_crs says {name}' if declared else (
        f'the file has no CRS and is read as {name} (the GeoJSON default), or declares it'
    )  # fmt: skip
    raise DataError(
        f'{where}: the coordinates ({span}) are not degrees, but {said}; they look projected: set '
        f'data.init_args.labels_crs to the CRS they are in (the imagery is in {_crs_name(crs)})'
    )


def _crs_name(crs: CRS) -> str:
    epsg = crs.to_epsg()
    return f'EPSG:{epsg}' if epsg else crs.name


def _units(crs: CRS) -> str:
    unit = crs.axis_info[0].unit_name if crs.axis_info else ''
    return {'metre': 'm', 'meter': 'm', 'degree': 'deg', 'foot': 'ft', 'US survey foot': 'ftUS'}.get(unit, unit)
