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

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS
from rasterio.enums import Resampling
from torchgeo.datasets import IntersectionDataset, VectorDataset

from ...errors import ConfigError
from ._log import Log, _info, _warn
from .grid import PixelGrid
from .inputs import check_dems, check_images, check_labels, grid_resolution, name_bands
from .rasters import BACKGROUND, LANDSLIDE, DemRaster, SampleFinisher, SceneRaster, TargetRaster
from .targets import landslide_polygons, scene_windows, usable_area, write_targets

#: Bump when the cached target rasters or cell counts change meaning.
CACHE_VERSION = 1


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
        self.image_files, self.images, n, self.dtype = check_images(images)
        self.band_names, self.band_names_source = name_bands(self.images[0], n, band_names)
        self.crs = CRS.from_user_input(crs) if crs else self.images[0].crs
        self.res, self.messages = grid_resolution(self.images, self.crs, res, resampling)
        self.label_files, self.labels_are_raster, self.label_rasters = check_labels(labels)
        self.dem_files, self.dems = check_dems(dem)
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
        """Imagery & targets (& DEM) as one torchgeo IntersectionDataset (after :meth:`build`).

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

    def _build_into(self, tmp: Path, grid: PixelGrid, info: Log, warn: Log) -> None:
        """Write the target rasters and cell counts of ``grid`` into ``tmp`` (see :meth:`build`)."""
        imagery, usable, summary = usable_area(self.images, self.dems, self.label_rasters, self.crs, self.progress,
                                               warn, self.warn)  # fmt: skip
        features: list[Any] = [p for p in shapely.get_parts(usable) if p.geom_type == 'Polygon' and p.area > 0]
        values = [BACKGROUND] * len(features)
        if not self.labels_are_raster:
            read = {'layer': self.labels_layer, 'labels_crs': self.labels_crs, 'invalid': self.invalid}
            landslides, found = landslide_polygons(self.label_files, imagery, usable, self.crs, read, info, warn)
            features += landslides
            values += [LANDSLIDE] * len(landslides)
            summary.update(found)
        vector_path = tmp / 'usable_and_landslides.gpkg'
        gpd.GeoDataFrame({'value': values}, geometry=features, crs=self.crs).to_file(vector_path, driver='GPKG')
        vector = VectorDataset(str(vector_path), crs=self.crs, res=self.res, label_name='value')
        label_raster = TargetRaster(self.label_files, self.crs, self.res) if self.labels_are_raster else None
        label_nodata = self.label_rasters[0].nodata if self.label_rasters else None
        windows = scene_windows(self.image_dataset(cache=False).index, grid)
        names, valid, landslide, per_scene = write_targets(tmp, grid, windows, vector, label_raster, label_nodata,
                                                           self.progress)  # fmt: skip
        summary['scene_landslide_pixels'] = per_scene
        if self.labels_are_raster and landslide.sum() == 0:
            warn('data.init_args.labels: the label raster marks no landslide pixel where the imagery has data')
        for scene, count in per_scene.items():
            if count == 0 and len(windows) > 1:
                warn(f'data.init_args.images: {scene} holds no labelled landslide: all its tiles are landslide-free')
        np.savez_compressed(tmp / 'cells.npz', valid=valid, landslide=landslide)
        summary['targets'] = names
        summary['grid'] = asdict(grid)
        self.summary = summary
