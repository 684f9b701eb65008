"""Your own data: georeferenced scenes and a landslide inventory, read through torchgeo's GeoDataset stack.

A practitioner brings one or more GeoTIFF scenes (any CRS and resolution), a landslide inventory (polygons in a
Shapefile, GeoPackage or GeoJSON, often in EPSG:4326; or a label raster) and optionally a DEM.
:class:`LandslideInventory` checks them, puts everything on one pixel grid and exposes a torchgeo
:class:`~torchgeo.datasets.IntersectionDataset` that samples any window of that grid:

* imagery: :class:`SceneRaster` (a :class:`~torchgeo.datasets.RasterDataset`): every scene is warped on the fly to
  one CRS and resolution (GDAL ``WarpedVRT`` + ``rasterio.merge`` inside torchgeo);
* labels: the inventory is read with geopandas and checked (geometry types, invalid geometries, CRS, polygons
  outside the imagery), then rasterized ONCE per scene onto the grid by torchgeo's
  :class:`~torchgeo.datasets.VectorDataset` (reprojection and rasterization are torchgeo's) and cached as tiled
  GeoTIFFs, read per sample by :class:`TargetRaster`. torchgeo's VectorDataset re-reads and re-rasterizes the whole
  vector file for every sample; the cache makes a sample two windowed raster reads (see
  ``benchmarks/inventory_loader.py``). A label raster (``labels: mask.tif``, values > 0 = landslide) goes through
  the same cache, resampled onto the grid by a RasterDataset (nearest);
* DEM: :class:`DemRaster` (bilinear), delivered as ``sample['dem']``.

The target rasters hold ``0`` = no usable data (imagery nodata, outside the DEM or the label raster), ``1`` =
background, ``2`` = landslide. Per-cell counts of usable and landslide pixels (cells of ``cell`` x ``cell`` pixels)
are computed while writing them: the datamodule builds its spatial splits and chooses its tiles from these counts
without reading any pixel again.

Samples (``dataset[geoslice]``, or ``InventoryTiles[i]``): ``image`` float32 ``(C, T, T)`` raw values of the
selected bands, ``mask`` int64 ``(T, T)`` in {0, 1}, optional ``dem`` float32 ``(1, T, T)``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import rasterio.warp
import shapely
import torch
from affine import Affine
from pyproj import CRS, Geod
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.windows import Window
from torch import Tensor
from torch.utils.data import Dataset, Sampler
from torchgeo.datasets import GeoDataset, IntersectionDataset, RasterDataset, VectorDataset

from ..errors import ConfigError, DataError, MissingFileError

__all__ = [
    'RASTER_SUFFIXES',
    'BalancedTileSampler',
    'DemRaster',
    'InventoryTiles',
    'LandslideInventory',
    'PixelGrid',
    'RasterInfo',
    'SampleFinisher',
    'SceneRaster',
    'TargetRaster',
    'inspect_raster',
    'read_landslide_polygons',
    'resolve_files',
    'valid_footprint',
    'window_sums',
]

#: Label files with these suffixes are label rasters; anything else is read as a vector file.
RASTER_SUFFIXES = ('.tif', '.tiff', '.vrt', '.img', '.jp2')
#: Files picked up when ``images`` / ``dem`` / ``labels`` name a folder.
_FOLDER_GLOBS = {'raster': ('*.tif', '*.tiff'), 'vector': ('*.gpkg', '*.geojson', '*.json', '*.shp')}
#: Bump when the cached target rasters or cell counts change meaning.
CACHE_VERSION = 1
#: Target raster values.
NODATA, BACKGROUND, LANDSLIDE = 0, 1, 2

Log = Callable[[str], None]


def _info(msg: str) -> None:
    import logging

    logging.getLogger('sam_cffnet.inventory').info(msg)


def _warn(msg: str) -> None:
    warnings.warn(msg, UserWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------------- input files
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


# ---------------------------------------------------------------------------------------------- labels
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
    if CRS.from_user_input(frame.crs) != crs:
        info(f'labels: reprojected {len(frame)} polygons of {path} from {frame.crs.to_string()} to {_crs_name(crs)}')
        frame = frame.to_crs(crs)
        fixed = ~frame.geometry.is_valid
        if fixed.any():
            frame.loc[fixed, 'geometry'] = [_polygonal_part(shapely.make_valid(g)) for g in frame.geometry[fixed]]
    return frame


def _crs_name(crs: CRS) -> str:
    epsg = crs.to_epsg()
    return f'EPSG:{epsg}' if epsg else crs.name


def _units(crs: CRS) -> str:
    unit = crs.axis_info[0].unit_name if crs.axis_info else ''
    return {'metre': 'm', 'meter': 'm', 'degree': 'deg', 'foot': 'ft', 'US survey foot': 'ftUS'}.get(unit, unit)


# ---------------------------------------------------------------------------------------------- torchgeo datasets
class _FixedBounds(RasterDataset):
    """A RasterDataset whose ``bounds`` are computed once, not on every query.

    torchgeo's ``bounds`` property scans the GeoDataFrame index each time ``__getitem__`` resolves a query (~30 % of
    a 256 px tile read here); our indexes never change after construction except through the ``crs``/``res``
    setters, which drop the cached value.
    """

    @property
    def bounds(self) -> tuple[slice, slice, slice]:
        """Bounding x, y and t slices of the index (cached)."""
        cached = self.__dict__.get('_bounds_cache')
        if cached is None:
            cached = self.__dict__['_bounds_cache'] = RasterDataset.bounds.fget(self)  # type: ignore[attr-defined]
        return cached

    @property
    def crs(self) -> CRS:
        """The dataset's CRS (torchgeo's)."""
        return RasterDataset.crs.fget(self)  # type: ignore[attr-defined]

    @crs.setter
    def crs(self, new_crs: CRS) -> None:
        self.__dict__.pop('_bounds_cache', None)
        RasterDataset.crs.fset(self, new_crs)  # type: ignore[attr-defined]

    @property
    def res(self) -> tuple[float, float]:
        """The dataset's resolution (torchgeo's)."""
        return RasterDataset.res.fget(self)  # type: ignore[attr-defined]

    @res.setter
    def res(self, new_res: float | tuple[float, float]) -> None:
        self.__dict__.pop('_bounds_cache', None)
        RasterDataset.res.fset(self, new_res)  # type: ignore[attr-defined]


class SceneRaster(_FixedBounds):
    """The imagery: GeoTIFF scenes warped on the fly to one CRS and resolution (torchgeo RasterDataset).

    Args:
        paths: the scene files.
        crs: the grid's CRS.
        res: the grid's resolution ``(x, y)`` in CRS units.
        all_bands: names of the bands in the files, in order.
        bands: the bands to read (default: all).
        resampling: GDAL resampling used when a scene is warped or resampled (name of ``rasterio.enums.Resampling``).
        cache: keep file handles open (torchgeo's ``cache``).
    """

    filename_glob = '*'

    def __init__(
        self,
        paths: Sequence[str],
        crs: CRS,
        res: tuple[float, float],
        all_bands: Sequence[str],
        bands: Sequence[str] | None = None,
        resampling: str = 'bilinear',
        cache: bool = True,
    ) -> None:
        self.all_bands = tuple(all_bands)
        self.resampling_name = resampling
        super().__init__(list(paths), crs=crs, res=res, bands=list(bands) if bands else None, cache=cache)

    @property
    def resampling(self) -> Resampling:
        """The configured resampling (torchgeo's default is bilinear for images)."""
        return Resampling[self.resampling_name]


class DemRaster(SceneRaster):
    """The DEM (first band), warped to the grid (bilinear by default); samples hold ``dem`` ``(1, T, T)``."""

    def __init__(
        self, paths: Sequence[str], crs: CRS, res: tuple[float, float], resampling: str = 'bilinear', cache: bool = True
    ) -> None:
        super().__init__(paths, crs, res, all_bands=('dem',), resampling=resampling, cache=cache)

    def __getitem__(self, query: Any) -> dict[str, Any]:
        """torchgeo's sample with ``image`` renamed ``dem``: float32 ``(1, T, T)`` elevations."""
        sample = super().__getitem__(query)
        sample['dem'] = sample.pop('image')
        return sample


class TargetRaster(_FixedBounds):
    """Rasters of labels on the grid (read with nearest resampling; samples hold ``mask`` ``(T, T)`` int64).

    The cached targets (0 nodata, 1 background, 2 landslide), or a user's label raster while the cache is built.
    """

    filename_glob = '*'
    is_image = False

    def __init__(self, paths: Sequence[str], crs: CRS, res: tuple[float, float], cache: bool = True) -> None:
        super().__init__(list(paths), crs=crs, res=res, cache=cache)


class SampleFinisher:
    """Turns an IntersectionDataset sample into the package's sample (a picklable transform).

    ``image`` float32 ``(C, T, T)``; ``mask`` int64 ``(T, T)`` = (target == landslide); ``dem`` float32
    ``(1, T, T)`` with DEM nodata pixels (only present in tiles allowed to hold some) set to the tile's valid mean.
    torchgeo's ``crs``/``bounds``/``transform`` entries are dropped (they differ between torchgeo versions and do
    not collate); :meth:`InventoryTiles.bounds` gives a tile's coordinates.
    """

    def __init__(self, dem_nodata: float | None = None) -> None:
        self.dem_nodata = dem_nodata

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Finish one sample.

        Args:
            sample: torchgeo's ``image`` ``(C, T, T)``, ``mask`` ``(T, T)`` target values, optional ``dem``.

        Returns:
            ``image`` float32 ``(C, T, T)``, ``mask`` int64 ``(T, T)`` in {0, 1}, optional ``dem`` float32
            ``(1, T, T)``.
        """
        out: dict[str, Any] = {'image': sample['image'].float(), 'mask': (sample['mask'] == LANDSLIDE).long()}
        if 'dem' in sample:
            dem = sample['dem'].float()
            bad = ~torch.isfinite(dem)
            if self.dem_nodata is not None:
                bad |= dem == self.dem_nodata
            if bad.any():
                fill = dem[~bad].mean() if (~bad).any() else torch.tensor(0.0)
                dem = torch.where(bad, fill, dem)
            out['dem'] = dem
        return out


# ---------------------------------------------------------------------------------------------- the grid
@dataclass(frozen=True)
class PixelGrid:
    """The pixel grid every scene is sampled on: CRS, resolution, top-left corner, size, and the cell size.

    Rows grow southwards, columns eastwards; ``width``/``height`` are whole numbers of cells.
    """

    crs_wkt: str
    res: tuple[float, float]
    left: float
    top: float
    width: int
    height: int
    cell: int

    @property
    def crs(self) -> CRS:
        """The grid's CRS."""
        return CRS.from_wkt(self.crs_wkt)

    @property
    def shape_cells(self) -> tuple[int, int]:
        """``(rows, cols)`` of cells."""
        return self.height // self.cell, self.width // self.cell

    def bounds(self, row: int, col: int, height: int, width: int) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of a pixel window."""
        rx, ry = self.res
        xmin = self.left + col * rx
        ymax = self.top - row * ry
        return xmin, ymax - height * ry, xmin + width * rx, ymax

    def geoslice(self, row: int, col: int, height: int, width: int) -> tuple[slice, slice]:
        """The torchgeo query ``(x, y)`` of a pixel window at the grid's resolution."""
        xmin, ymin, xmax, ymax = self.bounds(row, col, height, width)
        return slice(xmin, xmax, self.res[0]), slice(ymin, ymax, self.res[1])

    def pixel_area_km2(self) -> np.ndarray:
        """Area of one pixel in km² for every row of cells (geodesic on geographic grids)."""
        rows = self.shape_cells[0]
        crs = self.crs
        rx, ry = self.res
        if crs.is_projected:
            factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
            return np.full(rows, rx * ry * factor**2 / 1e6)
        geod = Geod(ellps='WGS84')
        areas = np.empty(rows)
        to_lonlat = None if crs.is_geographic else gpd.GeoSeries(crs=crs)
        for r in range(rows):
            xmin, ymin, xmax, ymax = self.bounds(r * self.cell + self.cell // 2, 0, 1, 1)
            box = shapely.box(xmin, ymin, xmax, ymax)
            if to_lonlat is not None:
                box = gpd.GeoSeries([box], crs=crs).to_crs(4326).iloc[0]
            areas[r] = abs(geod.geometry_area_perimeter(box)[0]) / 1e6
        return areas


def window_sums(cells: np.ndarray, k: int) -> np.ndarray:
    """Sums over every ``k`` x ``k`` window of a 2-D array (summed-area table).

    Args:
        cells: ``(R, C)`` numbers.
        k: window edge.

    Returns:
        ``(R - k + 1, C - k + 1)``: entry ``(r, c)`` = ``cells[r:r+k, c:c+k].sum()`` (empty if ``k`` is too big).
    """
    rows, cols = cells.shape
    if k > rows or k > cols:
        return np.zeros((0, 0), dtype=np.int64)
    table = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    table[1:, 1:] = cells.astype(np.int64).cumsum(0).cumsum(1)
    return table[k:, k:] - table[:-k, k:] - table[k:, :-k] + table[:-k, :-k]


# ---------------------------------------------------------------------------------------------- the inventory
def _file_key(path: str) -> list[Any]:
    stat = os.stat(path)
    return [path, stat.st_size, stat.st_mtime_ns]


class LandslideInventory:
    """Scenes + landslide labels (+ DEM) checked and put on one pixel grid; torchgeo datasets over it.

    Construction reads headers only (cheap; bad band counts, missing files and unreadable rasters stop here).
    :meth:`build` does the work: valid-data footprints, label checks, the cached target rasters and cell counts.

    Args:
        images: GeoTIFF scene(s): a path, a glob, a folder or a list.
        labels: landslide polygons (vector file(s)) or label raster(s) (values > 0 = landslide).
        dem: optional DEM raster(s).
        crs: the grid's CRS (default: the first scene's).
        res: the grid's resolution in CRS units (default: the finest of the scenes once in ``crs``).
        resampling: how imagery is resampled onto the grid (``rasterio.enums.Resampling`` name).
        band_names: names of the imagery's bands (default: the files' band descriptions, RGB colour
            interpretation, ``red, green, blue`` for 3 bands, else ``band1 ... bandN``).
        labels_layer: layer of a multi-layer vector file.
        labels_crs: CRS of a label file that declares none.
        invalid_geometries: ``'repair'`` or ``'error'``.
        cell: cell size in pixels for the per-cell counts (the finest step of tile positions).
        cache_dir: where the target rasters are cached (default ``<tmp>/sam_cffnet_inventory``).
        info: where to log.
        warn: where to warn.
        progress: show tqdm progress bars while building.
    """

    def __init__(
        self,
        images: Any,
        labels: Any,
        dem: Any = None,
        crs: str | None = None,
        res: float | None = None,
        resampling: str = 'bilinear',
        band_names: Sequence[str] | None = None,
        labels_layer: str | int | None = None,
        labels_crs: str | None = None,
        invalid_geometries: Literal['repair', 'error'] = 'repair',
        cell: int = 64,
        cache_dir: str | None = None,
        info: Log = _info,
        warn: Log = _warn,
        progress: bool = True,
    ) -> None:
        if resampling not in Resampling.__members__:
            raise ConfigError(f'data.init_args.resampling: {resampling!r} is not one of {list(Resampling.__members__)}')
        if invalid_geometries not in ('repair', 'error'):
            raise ConfigError(
                f"data.init_args.invalid_geometries must be 'repair' or 'error', got {invalid_geometries!r}"
            )
        self.info, self.warn, self.progress = info, warn, progress
        self.resampling = resampling
        self.labels_layer, self.labels_crs, self.invalid = labels_layer, labels_crs, invalid_geometries
        self.cell = int(cell)
        self.cache_root = Path(cache_dir or Path(tempfile.gettempdir()) / 'sam_cffnet_inventory').expanduser()
        # ---- imagery
        self.image_files = resolve_files(images, 'images', 'raster')
        self.images = [inspect_raster(p, 'images') for p in self.image_files]
        counts = {i.data_count for i in self.images}
        if len(counts) > 1:
            listing = ', '.join(f'{Path(i.path).name}: {i.data_count}' for i in self.images)
            raise DataError(
                f'data.init_args.images: the scenes have different band counts ({listing}); every scene must hold '
                f'the same bands in the same order (split the scenes into separate runs, or select bands with gdal)'
            )
        dtypes = {i.dtype for i in self.images}
        if len(dtypes) > 1:
            listing = ', '.join(f'{Path(i.path).name}: {i.dtype}' for i in self.images)
            raise DataError(
                f'data.init_args.images: the scenes have different data types ({listing}); one normalization cannot '
                f'fit them all: convert them to one type (and scale) first'
            )
        self.dtype = dtypes.pop()
        n = counts.pop()
        if band_names is not None:
            if len(band_names) != n or len(set(band_names)) != n:
                raise ConfigError(
                    f'data.init_args.band_names: {list(band_names)} must name each of the {n} bands of the imagery once'
                )
            self.band_names = tuple(str(b) for b in band_names)
            self.band_names_source = 'given in the config'
        elif self.images[0].names and len(self.images[0].names) == n:
            self.band_names = self.images[0].names
            self.band_names_source = 'read from the first scene'
        elif n == 3:
            self.band_names = ('red', 'green', 'blue')
            self.band_names_source = 'assumed RGB order (3 bands without descriptions; set band_names otherwise)'
        else:
            self.band_names = tuple(f'band{i + 1}' for i in range(n))
            self.band_names_source = 'numbered (no band descriptions in the files; set band_names to name them)'
        # ---- grid CRS and resolution
        self.crs = CRS.from_user_input(crs) if crs else self.images[0].crs
        native = [_resolution_in(i, self.crs) for i in self.images]
        if res is not None:
            if float(res) <= 0:
                raise ConfigError(f'data.init_args.res must be positive, got {res}')
            self.res = (float(res), float(res))
            res_source = 'given in the config'
        else:
            finest = min(min(r) for r in native)
            self.res = (finest, finest)
            res_source = 'the finest of the scenes'
        self.messages: list[str] = []
        differ = [(i, r) for i, r in zip(self.images, native, strict=True) if not np.allclose(r, self.res, rtol=1e-6)]
        other_crs = [i for i in self.images if i.crs != self.crs]
        if other_crs:
            self.messages.append(
                f'imagery: {len(other_crs)} scene(s) not in {_crs_name(self.crs)} are warped on the fly '
                f'({", ".join(f"{Path(i.path).name}: {_crs_name(i.crs)}" for i in other_crs[:5])})'
            )
        if differ:
            listing = ', '.join(f'{Path(i.path).name}: {r[0]:g} x {r[1]:g}' for i, r in differ[:5])
            self.messages.append(
                f'imagery: resolutions differ from the grid ({listing}); every scene is resampled to '
                f'{self.res[0]:g} {_units(self.crs)} ({res_source}) with {resampling} resampling'
            )
        # ---- labels
        self.label_files = resolve_files(labels, 'labels', 'any')
        kinds = {Path(p).suffix.lower() in RASTER_SUFFIXES for p in self.label_files}
        if len(kinds) > 1:
            raise ConfigError('data.init_args.labels: give either polygon files or label rasters, not both')
        self.labels_are_raster = kinds.pop()
        self.label_rasters = [inspect_raster(p, 'labels') for p in self.label_files] if self.labels_are_raster else []
        for r in self.label_rasters:
            if r.data_count != 1:
                raise DataError(
                    f'data.init_args.labels: {r.path} has {r.data_count} bands; a label raster has one band '
                    f'(0 = background, > 0 = landslide)'
                )
        # ---- DEM
        self.dem_files = resolve_files(dem, 'dem', 'raster') if dem else []
        self.dems = [inspect_raster(p, 'dem') for p in self.dem_files]
        for d in self.dems:
            if d.data_count != 1:
                raise DataError(f'data.init_args.dem: {d.path} has {d.data_count} bands; expected a one-band DEM')
        # ---- built by build()
        self.grid: PixelGrid | None = None
        self.valid_cells: np.ndarray | None = None
        self.landslide_cells: np.ndarray | None = None
        self.summary: dict[str, Any] = {}
        self.target_files: list[str] = []
        self.cache_folder: Path | None = None

    # ------------------------------------------------------------------ datasets
    def image_dataset(self, bands: Sequence[str] | None = None, cache: bool = True) -> SceneRaster:
        """The imagery as a torchgeo RasterDataset on the grid."""
        return SceneRaster(self.image_files, self.crs, self.res, self.band_names, bands, self.resampling, cache)

    def dataset(self, bands: Sequence[str] | None = None, cache: bool = True) -> IntersectionDataset:
        """imagery & targets (& DEM) as one torchgeo IntersectionDataset (after :meth:`build`).

        Args:
            bands: the imagery bands to read (default: all).
            cache: keep file handles open (open one instance per process: DataLoader workers fork from the
                process that builds it, which must not have read from it).

        Returns:
            Samples ``image`` ``(C, T, T)`` float32, ``mask`` ``(T, T)`` int64 {0, 1}, optional ``dem``.
        """
        if not self.target_files:
            raise RuntimeError('LandslideInventory.build() must run before dataset()')
        finisher = SampleFinisher(self.dems[0].nodata if self.dems else None)
        images = self.image_dataset(bands, cache)
        targets = TargetRaster(self.target_files, self.crs, self.res, cache=cache)
        if not self.dems:
            return IntersectionDataset(images, targets, transforms=finisher)
        pair = IntersectionDataset(images, targets)
        return IntersectionDataset(
            pair, DemRaster(self.dem_files, self.crs, self.res, cache=cache), transforms=finisher
        )

    # ------------------------------------------------------------------ build
    def _grid(self) -> PixelGrid:
        images = self.image_dataset(cache=False)
        xmin, ymin, xmax, ymax = images.index.total_bounds
        rx, ry = self.res
        c = self.cell
        width = math.ceil(round((xmax - xmin) / rx, 6) / c) * c
        height = math.ceil(round((ymax - ymin) / ry, 6) / c) * c
        return PixelGrid(self.crs.to_wkt(), (rx, ry), float(xmin), float(ymax), int(width), int(height), c)

    def _cache_key(self, grid: PixelGrid) -> str:
        key = {
            'version': CACHE_VERSION, 'grid': asdict(grid), 'images': [_file_key(p) for p in self.image_files],
            'labels': [_file_key(p) for p in self.label_files], 'dem': [_file_key(p) for p in self.dem_files],
            'layer': self.labels_layer, 'labels_crs': self.labels_crs, 'invalid': self.invalid,
        }  # fmt: skip
        return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def build(self) -> LandslideInventory:
        """Check the inputs, write (or reuse) the cached target rasters and count usable/landslide pixels per cell.

        Raises:
            DataError: no polygon overlaps the imagery, a DEM that covers none of it, a label raster that covers none
                of it.

        Returns:
            ``self``.
        """
        for msg in self.messages:
            self.info(msg)
        grid = self._grid()
        self.grid = grid
        folder = self.cache_root / self._cache_key(grid)
        done = folder / 'summary.json'
        if done.is_file():
            self._load(folder)
            for msg in self.summary.get('warnings', []):
                self.warn(msg)
            for msg in self.summary.get('infos', []):
                self.info(msg)
            self.info(f'inventory: cached target rasters reused from {folder}')
            return self
        try:
            self.cache_root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f'.{folder.name}.', dir=self.cache_root))
        except OSError as err:
            raise ConfigError(f'data.init_args.cache_dir: cannot write to {self.cache_root} ({err})') from err
        warns: list[str] = []
        infos: list[str] = []

        def warn(msg: str) -> None:
            warns.append(msg)
            self.warn(msg)

        def info(msg: str) -> None:
            infos.append(msg)
            self.info(msg)

        try:
            self._build_into(tmp, grid, info, warn)
            self.summary.update({'warnings': warns, 'infos': infos})
            (tmp / 'summary.json').write_text(json.dumps(self.summary, indent=1, default=str))
            try:
                os.replace(tmp, folder)  # atomic; another process may have won the race
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._load(folder)
        info(f'inventory: target rasters cached in {folder}')
        return self

    def _load(self, folder: Path) -> None:
        self.summary = json.loads((folder / 'summary.json').read_text())
        cells = np.load(folder / 'cells.npz')
        self.valid_cells, self.landslide_cells = cells['valid'], cells['landslide']
        self.target_files = [str(folder / name) for name in self.summary['targets']]
        self.cache_folder = folder

    def _footprints(self, infos: Sequence[RasterInfo], setting: str) -> Any:
        from tqdm.auto import tqdm

        parts = []
        for i in tqdm(infos, desc=f'{setting} footprints', disable=not self.progress or len(infos) < 4, leave=False):
            geom = valid_footprint(i.path, self.crs)
            if geom.is_empty:
                self.warn(f'data.init_args.{setting}: {i.path} holds no valid pixel (all nodata); it is ignored')
            parts.append(geom)
        return shapely.union_all(parts)

    def _build_into(self, tmp: Path, grid: PixelGrid, info: Log, warn: Log) -> None:
        from tqdm.auto import tqdm

        imagery = self._footprints(self.images, 'images')
        if imagery.is_empty:
            raise DataError('data.init_args.images: no scene holds a valid pixel (all nodata)')
        usable = imagery
        summary: dict[str, Any] = {'imagery_area': imagery.area}
        if self.dems:
            dem = self._footprints(self.dems, 'dem')
            covered = imagery.intersection(dem).area / imagery.area if not dem.is_empty else 0.0
            summary['dem_coverage'] = covered
            if covered <= 0:
                raise DataError(
                    f'data.init_args.dem: the DEM ({", ".join(Path(p).name for p in self.dem_files)}) covers none of '
                    f'the imagery; give a DEM over the same area (any CRS and resolution)'
                )
            if covered < 0.999:
                warn(
                    f'data.init_args.dem: the DEM covers {100 * covered:.1f} % of the imagery with data; tiles are '
                    f'taken only where imagery and DEM both exist'
                )
            usable = usable.intersection(dem)
        if self.label_rasters:
            cover = self._footprints(self.label_rasters, 'labels')
            covered = imagery.intersection(cover).area / imagery.area if not cover.is_empty else 0.0
            if covered <= 0:
                raise DataError('data.init_args.labels: the label raster covers none of the imagery')
            if covered < 0.999:
                warn(
                    f'data.init_args.labels: the label raster covers {100 * covered:.1f} % of the imagery with data; '
                    f'tiles are taken only where it exists'
                )
            usable = usable.intersection(cover)
        usable = shapely.make_valid(usable)
        features: list[Any] = [p for p in shapely.get_parts(usable) if p.geom_type == 'Polygon' and p.area > 0]
        values = [BACKGROUND] * len(features)
        if not self.labels_are_raster:
            frames = [
                read_landslide_polygons(p, self.crs, self.labels_layer, self.labels_crs, self.invalid, info, warn)
                for p in self.label_files
            ]
            polygons = gpd.GeoDataFrame(
                {'feature': np.concatenate([f['feature'].values for f in frames])},
                geometry=[g for f in frames for g in f.geometry], crs=self.crs,
            )  # fmt: skip
            inside = polygons.intersects(imagery).values
            names = ', '.join(Path(p).name for p in self.label_files)
            if not inside.any():
                xmin, ymin, xmax, ymax = polygons.total_bounds
                ixmin, iymin, ixmax, iymax = imagery.bounds
                raise DataError(
                    f'data.init_args.labels: none of the {len(polygons)} polygons of {names} overlaps the imagery '
                    f'(polygons span x {xmin:.1f}..{xmax:.1f}, y {ymin:.1f}..{ymax:.1f}; imagery x {ixmin:.1f}..'
                    f'{ixmax:.1f}, y {iymin:.1f}..{iymax:.1f} in {_crs_name(self.crs)}): wrong file, or a wrong CRS '
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
                    'data.init_args.labels: no landslide polygon overlaps the area where every input (imagery, DEM) '
                    'has data'
                )
            features += landslides
            values += [LANDSLIDE] * len(landslides)
            summary.update({'polygons': len(inside), 'polygons_inside': int(inside.sum()),
                            'landslide_area': float(sum(g.area for g in landslides))})  # fmt: skip
        vector_path = tmp / 'usable_and_landslides.gpkg'
        gpd.GeoDataFrame({'value': values}, geometry=features, crs=self.crs).to_file(vector_path, driver='GPKG')
        vector = VectorDataset(str(vector_path), crs=self.crs, res=self.res, label_name='value')
        label_raster = TargetRaster(self.label_files, self.crs, self.res) if self.labels_are_raster else None
        label_nodata = self.label_rasters[0].nodata if self.label_rasters else None
        # ---- per scene: rasterize (torchgeo) block by block, count per cell
        rows, cols = grid.shape_cells
        valid = np.zeros((rows, cols), np.int32)
        landslide = np.zeros((rows, cols), np.int32)
        c = grid.cell
        block = max(c, (2048 // c) * c)
        names: list[str] = []
        footprints = self.image_dataset(cache=False).index
        windows = []
        for k, path in enumerate(footprints.filepath):
            bxmin, bymin, bxmax, bymax = footprints.geometry.iloc[k].bounds
            col0 = max(0, math.floor(round((bxmin - grid.left) / grid.res[0], 6) / c) * c)
            col1 = min(grid.width, math.ceil(round((bxmax - grid.left) / grid.res[0], 6) / c) * c)
            row0 = max(0, math.floor(round((grid.top - bymax) / grid.res[1], 6) / c) * c)
            row1 = min(grid.height, math.ceil(round((grid.top - bymin) / grid.res[1], 6) / c) * c)
            windows.append((path, row0, row1, col0, col1))
        total = sum(math.ceil((r1 - r0) / block) * math.ceil((c1 - c0) / block) for _, r0, r1, c0, c1 in windows)
        bar = tqdm(total=total, desc='rasterizing labels', disable=not self.progress, leave=False)
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
            with rasterio.open(tmp / name, 'w', **profile) as dst:
                for r in range(row0, row1, block):
                    for q in range(col0, col1, block):
                        h, w = min(block, row1 - r), min(block, col1 - q)
                        query = grid.geoslice(r, q, h, w)
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
                        dst.write(target, 1, window=Window(q - col0, r - row0, w, h))
                        cells = target.reshape(h // c, c, w // c, c)
                        rs, cs = slice(r // c, (r + h) // c), slice(q // c, (q + w) // c)
                        np.maximum(valid[rs, cs], (cells > 0).sum((1, 3)), out=valid[rs, cs])
                        np.maximum(landslide[rs, cs], (cells == LANDSLIDE).sum((1, 3)), out=landslide[rs, cs])
                        bar.update()
            summary.setdefault('scene_landslide_pixels', {})[os.path.basename(path)] = int(
                landslide[row0 // c : row1 // c, col0 // c : col1 // c].sum()
            )
        bar.close()
        if self.labels_are_raster and landslide.sum() == 0:
            warn('data.init_args.labels: the label raster marks no landslide pixel where the imagery has data')
        for scene, count in summary.get('scene_landslide_pixels', {}).items():
            if count == 0 and len(windows) > 1:
                warn(f'data.init_args.images: {scene} holds no labelled landslide: all its tiles are landslide-free')
        np.savez_compressed(tmp / 'cells.npz', valid=valid, landslide=landslide)
        summary['targets'] = names
        summary['grid'] = asdict(grid)
        self.summary = summary


# ---------------------------------------------------------------------------------------------- tiles and sampling
class InventoryTiles(Dataset[dict[str, Tensor]]):
    """The tiles of one split as an integer-indexed dataset over a torchgeo GeoDataset.

    ``tiles[i]`` reads tile ``i`` (``positions[i]`` = top-left pixel ``(row, col)`` on the grid) through the
    GeoDataset; ``tiles[geoslice]`` passes a torchgeo query straight through (so torchgeo samplers work too).

    Args:
        dataset: the inventory's IntersectionDataset (:meth:`LandslideInventory.dataset`).
        grid: the pixel grid.
        positions: ``(N, 2)`` top-left pixels.
        tile_size: tile edge in pixels.
        positive: ``(N,)`` True where the tile holds landslide pixels.
    """

    def __init__(
        self, dataset: GeoDataset, grid: PixelGrid, positions: np.ndarray, tile_size: int, positive: np.ndarray
    ) -> None:
        self.dataset = dataset
        self.grid = grid
        self.positions = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
        self.tile_size = int(tile_size)
        self.positive = np.asarray(positive, dtype=bool)

    def __len__(self) -> int:
        return len(self.positions)

    def geoslice(self, index: int) -> tuple[slice, slice]:
        """torchgeo query of tile ``index``."""
        r, c = self.positions[index]
        return self.grid.geoslice(int(r), int(c), self.tile_size, self.tile_size)

    def bounds(self, index: int) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of tile ``index`` in the grid's CRS."""
        r, c = self.positions[index]
        return self.grid.bounds(int(r), int(c), self.tile_size, self.tile_size)

    def __getitem__(self, index: int | tuple[slice, ...]) -> dict[str, Tensor]:
        """Tile ``index`` (or a torchgeo query): ``image`` float32 ``(C, T, T)`` raw values, ``mask`` int64
        ``(T, T)`` in {0, 1}, optional ``dem`` float32 ``(1, T, T)``."""
        query = index if isinstance(index, tuple) else self.geoslice(int(index))
        return self.dataset[query]

    def to_geodataframe(self) -> gpd.GeoDataFrame:
        """One box per tile (``index``, ``positive``) in the grid's CRS: where each predicted tile lies."""
        boxes = [shapely.box(*self.bounds(i)) for i in range(len(self))]
        return gpd.GeoDataFrame(
            {'index': np.arange(len(self)), 'positive': self.positive}, geometry=boxes, crs=self.grid.crs
        )

    def plot(self, sample: dict[str, Tensor], suptitle: str | None = None) -> Any:
        """Image (first three bands, stretched), mask and prediction if present."""
        import matplotlib.pyplot as plt

        image = sample['image'][:3].float()
        lo, hi = image.amin(dim=(1, 2), keepdim=True), image.amax(dim=(1, 2), keepdim=True)
        image = ((image - lo) / (hi - lo).clamp_min(1e-6)).permute(1, 2, 0).numpy()
        panels = [('image', image)] + [(k, sample[k].numpy()) for k in ('mask', 'prediction') if k in sample]
        fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3))
        for ax, (title, data) in zip(np.atleast_1d(axes), panels, strict=True):
            ax.imshow(data, cmap=None if data.ndim == 3 else 'gray', vmin=0)
            ax.set_title(title)
            ax.axis('off')
        if suptitle:
            fig.suptitle(suptitle)
        return fig


class BalancedTileSampler(Sampler[int]):
    """Training tiles drawn every epoch with a fixed share of landslide-free tiles.

    Epoch ``e`` draws ``length`` tile indices: ``round(length * negative_ratio)`` among the landslide-free tiles and
    the rest among tiles with landslides (each pool without replacement while it lasts), shuffled together. The draw
    depends only on ``(seed, epoch)`` (Lightning calls :meth:`set_epoch`), so a resumed run sees the same tiles.

    Args:
        positive: ``(N,)`` True for tiles holding landslide pixels.
        length: tiles per epoch.
        negative_ratio: share of landslide-free tiles in [0, 1] (all tiles come from the pool that exists when the
            other is empty).
        seed: seed of the draws.
        shuffle: False draws epoch 0's tiles every epoch.
    """

    def __init__(self, positive: np.ndarray, length: int, negative_ratio: float, seed: int, shuffle: bool = True):
        self.positive = np.asarray(positive, dtype=bool)
        self.length = int(length)
        self.negative_ratio = float(negative_ratio)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the draw of ``epoch``."""
        self.epoch = int(epoch)

    @staticmethod
    def _draw(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        if n <= 0 or len(pool) == 0:
            return np.zeros(0, dtype=np.int64)
        reps = math.ceil(n / len(pool))
        return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n]

    def counts(self) -> tuple[int, int]:
        """``(landslide tiles, landslide-free tiles)`` per epoch."""
        pos, neg = int(self.positive.sum()), int((~self.positive).sum())
        n_neg = round(self.length * self.negative_ratio) if pos else self.length
        n_neg = n_neg if neg else 0
        return self.length - n_neg, n_neg

    def __iter__(self) -> Any:
        rng = np.random.default_rng([self.seed, self.epoch if self.shuffle else 0])
        n_pos, n_neg = self.counts()
        chosen = np.concatenate([
            self._draw(np.flatnonzero(self.positive), n_pos, rng),
            self._draw(np.flatnonzero(~self.positive), n_neg, rng),
        ])  # fmt: skip
        return iter(rng.permutation(chosen).tolist())

    def __len__(self) -> int:
        return self.length
