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
import rasterio
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.windows import Window
from torchgeo.datasets import IntersectionDataset, VectorDataset

from ...errors import ConfigError, DataError
from ._log import Log, _info, _warn
from .files import RasterInfo, _resolution_in, inspect_raster, resolve_files, valid_footprint
from .grid import PixelGrid
from .labels import RASTER_SUFFIXES, _crs_name, _polygonal_part, _units, read_landslide_polygons
from .rasters import BACKGROUND, LANDSLIDE, NODATA, DemRaster, SampleFinisher, SceneRaster, TargetRaster

#: Bump when the cached target rasters or cell counts change meaning.
CACHE_VERSION = 1


def _file_key(path: str) -> list[Any]:
    stat = os.stat(path)
    return [path, stat.st_size, stat.st_mtime_ns]


def _shared(images: list[RasterInfo], attr: str, what: str, advice: str) -> Any:
    """The value of ``attr`` that every scene shares; a :class:`DataError` listing each scene's value otherwise."""
    values = {getattr(i, attr) for i in images}
    if len(values) > 1:
        listing = ', '.join(f'{Path(i.path).name}: {getattr(i, attr)}' for i in images)
        raise DataError(f'data.init_args.images: the scenes have different {what} ({listing}); {advice}')
    return values.pop()


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
        n = _shared(
            self.images,
            'data_count',
            'band counts',
            'every scene must hold the same bands in the same '
            'order (split the scenes into separate runs, or select bands with gdal)',
        )
        self.dtype = _shared(
            self.images,
            'dtype',
            'data types',
            'one normalization cannot fit them all: convert them to one type (and scale) first',
        )
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
