"""Input files: resolving the ``images`` / ``labels`` / ``dem`` settings, raster headers, resolutions, footprints."""

from __future__ import annotations

import glob
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import geopandas as gpd
import rasterio
import rasterio.features
import rasterio.warp
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.enums import ColorInterp, MaskFlags

from ...errors import DataError, MissingFileError

#: Files picked up when ``images`` / ``dem`` / ``labels`` name a folder.
_FOLDER_GLOBS = {'raster': ('*.tif', '*.tiff'), 'vector': ('*.gpkg', '*.geojson', '*.json', '*.shp')}


def resolve_files(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], setting: str,
                  kind: Literal['raster', 'vector', 'any'] = 'raster') -> list[str]:  # fmt: skip
    """The files named by a setting: a path, a glob pattern, a folder, or a list of those.

    Args:
        spec: what the user wrote.
        setting: the setting's name (for messages), e.g. ``'images'``.
        kind: which files a folder contributes (``'raster'``: ``*.tif``; ``'vector'``: ``*.gpkg``, ``*.geojson``,
            ``*.shp``; ``'any'``: both).

    Returns:
        The files in the order given (a glob or folder sorted), without duplicates.

    Raises:
        MissingFileError: a path that does not exist, a glob or folder without matching files, or nothing given.
    """
    items = [spec] if isinstance(spec, str | os.PathLike) else list(spec or [])
    if not items:
        raise MissingFileError(f'data.init_args.{setting}: no file given')
    globs = _FOLDER_GLOBS['raster'] + _FOLDER_GLOBS['vector'] if kind == 'any' else _FOLDER_GLOBS[kind]
    out: list[str] = []
    for item in items:
        text = os.path.expanduser(str(item))
        if glob.has_magic(text):
            found = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
            if not found:
                raise MissingFileError(f'data.init_args.{setting}: no file matches {text}')
            out += found
        elif os.path.isdir(text):
            found = sorted({p for g in globs for p in glob.glob(os.path.join(text, '**', g), recursive=True)})
            if not found:
                raise MissingFileError(f'data.init_args.{setting}: the folder {text} holds no {" / ".join(globs)} file')
            out += found
        elif os.path.isfile(text):
            out.append(text)
        else:
            raise MissingFileError(f'data.init_args.{setting}: {text} does not exist')
    return list(dict.fromkeys(os.path.abspath(p) for p in out))


@dataclass(frozen=True)
class RasterInfo:
    """Header of one raster file (read without loading pixels)."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs_wkt: str
    res: tuple[float, float]
    bounds: tuple[float, float, float, float]
    nodata: float | None
    alpha: bool
    names: tuple[str, ...] = field(default=())

    @property
    def crs(self) -> CRS:
        """The file's CRS."""
        return CRS.from_wkt(self.crs_wkt)

    @property
    def data_count(self) -> int:
        """Bands holding data (an alpha band excluded)."""
        return self.count - int(self.alpha)


def inspect_raster(path: str, setting: str) -> RasterInfo:
    """Read the header of a georeferenced raster.

    Raises:
        DataError: not readable by GDAL, or without a CRS / geotransform (the message names the file and setting).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if src.crs is None or src.transform.is_identity:
                    raise DataError(
                        f'data.init_args.{setting}: {path} has no georeferencing (CRS and geotransform); expected a '
                        f'GeoTIFF with a CRS (assign one with `gdal_edit.py -a_srs EPSG:XXXX` if you know it)'
                    )
                interp = tuple(src.colorinterp)
                alpha = src.count > 1 and interp[-1] == ColorInterp.alpha
                descriptions = tuple(d or '' for d in src.descriptions)[: src.count - int(alpha)]
                names: tuple[str, ...] = ()
                if all(descriptions) and len(set(descriptions)) == len(descriptions):
                    names = tuple(d.strip().lower().replace(' ', '_') for d in descriptions)
                elif interp[: src.count - int(alpha)] == (ColorInterp.red, ColorInterp.green, ColorInterp.blue):
                    names = ('red', 'green', 'blue')
                return RasterInfo(
                    path=path, width=src.width, height=src.height, count=src.count, dtype=src.dtypes[0],
                    crs_wkt=src.crs.to_wkt(), res=(abs(src.transform.a), abs(src.transform.e)),
                    bounds=tuple(src.bounds), nodata=src.nodata, alpha=alpha, names=names,
                )  # fmt: skip
    except rasterio.errors.RasterioIOError as err:
        raise DataError(f'data.init_args.{setting}: {path} is not a raster GDAL can read ({err})') from err


def _resolution_in(info: RasterInfo, crs: CRS) -> tuple[float, float]:
    """The pixel size of a raster once warped to ``crs`` (GDAL's suggested warp grid)."""
    if info.crs == crs:
        return info.res
    transform, _, _ = rasterio.warp.calculate_default_transform(
        info.crs_wkt, crs.to_wkt(), info.width, info.height, *info.bounds
    )
    return abs(transform.a), abs(transform.e)


def valid_footprint(path: str, crs: CRS, max_pixels: int = 4096) -> Any:
    """The area where a raster has data, as a (multi)polygon in ``crs``.

    GDAL's dataset mask (nodata value, alpha band or internal mask; all pixels when the file declares none) is read
    at most ``max_pixels`` wide, polygonized, densified and reprojected with geopandas (curved edges of a warped
    scene stay curved).
    """
    with rasterio.open(path) as src:
        all_valid = all(MaskFlags.all_valid in flags for flags in src.mask_flag_enums)
        if all_valid:
            geom = shapely.box(*src.bounds)
        else:
            scale = max(1, math.ceil(max(src.width, src.height) / max_pixels))
            shape = (math.ceil(src.height / scale), math.ceil(src.width / scale))
            mask = src.dataset_mask(out_shape=shape)
            transform = src.transform @ Affine.scale(src.width / shape[1], src.height / shape[0])
            parts = [shapely.geometry.shape(g) for g, _ in rasterio.features.shapes(mask, mask=mask > 0,
                                                                                     transform=transform)]  # fmt: skip
            geom = shapely.union_all(parts) if parts else shapely.Polygon()
        src_crs = src.crs
        edge = max(src.width * abs(src.transform.a), src.height * abs(src.transform.e)) / 64
    if geom.is_empty:
        return geom
    geom = shapely.segmentize(geom, edge)
    out = gpd.GeoSeries([geom], crs=src_crs).to_crs(crs).iloc[0]
    return shapely.make_valid(out)
