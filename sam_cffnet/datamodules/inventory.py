"""LightningDataModule for your own data: GeoTIFF scenes + a landslide inventory (+ DEM), on torchgeo's GeoDataset.

Inputs (``data.init_args``): ``images`` (a GeoTIFF, a glob, a folder or a list; any CRS and resolution),
``labels`` (landslide polygons in a Shapefile, GeoPackage or GeoJSON in any CRS, or a label raster), optional
``dem``. Everything is read through torchgeo's RasterDataset / VectorDataset / IntersectionDataset on one pixel grid
(:mod:`sam_cffnet.datasets.inventory`); batches follow the package's contract (``image`` float32 ``B x C x T x T``
normalized by :attr:`preprocessing`, ``mask`` int64 ``B x T x T`` in {0, 1}, ``dem`` with ``dem_mode: separate``).

Splits (no pixel in two splits, seeded, logged with their areas):

* ``split: blocks`` (default): the grid is cut into square blocks of ``block_size`` pixels (a multiple of
  ``tile_size``); blocks holding data go to train/val/test at random (seeded by ``seed``, stratified by whether a
  block holds landslides) in ``split_ratios``.
* ``split: regions``: polygons of ``split_regions`` (any vector file and CRS) whose ``split_attribute`` column says
  ``train``, ``val`` or ``test``; a cell belongs to a split only if its region covers it entirely; overlapping
  regions of two splits are refused.

Every tile lies entirely inside one split's area: training tiles start every ``stride`` pixels (default
``tile_size // 4``), validation/test/predict tiles form the non-overlapping ``tile_size`` grid. ``split_gap`` pixels
around val/test areas are left out of them (a buffer against spatial autocorrelation). A tile is used only where at
least ``min_valid_fraction`` of its pixels have data in every input (imagery nodata/alpha/mask, DEM, label raster):
nodata is never trained on. Each training epoch draws ``samples_per_epoch`` tiles, a share ``negative_ratio`` of
them without any landslide pixel (seeded by ``(seed, epoch)``: a resumed run draws the same tiles).

Normalization: ``reference`` (default; ``x * scale`` clipped to [0, 1]: the SAM-CFFNet recipe; ``scale`` defaults to
1/255 for 8-bit imagery and must be given for other types), ``dataset`` (per-band mean/std computed at setup from up
to ``stats_tiles`` training tiles, or ``mean``/``std`` given in the config), ``none``. The resulting
:class:`~sam_cffnet.preprocessing.Preprocessing` (band names, ``band_indices`` into the imagery's bands, constants)
is stored in every checkpoint, so ``python -m sam_cffnet map --checkpoint CKPT --input new_scene.tif`` applies the
same bands and normalization to a new scene holding the same bands.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..datasets.inventory import BalancedTileSampler, InventoryTiles, LandslideInventory, window_sums
from ..errors import ConfigError, DataError
from ..preprocessing import Preprocessing
from .base import STAGE_SPLITS, LandslideDataModule, split_indices

__all__ = ['InventoryDataModule']

SPLITS = ('train', 'val', 'test')


def _default_stride(tile_size: int) -> int:
    """The largest divisor of ``tile_size`` not above ``tile_size // 4``."""
    target = max(1, tile_size // 4)
    return max(d for d in range(1, target + 1) if tile_size % d == 0)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation of a boolean array by ``radius`` cells."""
    if radius <= 0:
        return mask.copy()
    padded = np.pad(mask.astype(np.int64), radius)
    return window_sums(padded, 2 * radius + 1) > 0


class InventoryDataModule(LandslideDataModule):
    """Train on your own georeferenced imagery and landslide inventory (see the module docstring).

    Args:
        images: GeoTIFF scene(s): a path, a glob (``scenes/*.tif``), a folder or a list; any CRS and resolution,
            the same bands in every scene.
        labels: landslide polygons (Shapefile, GeoPackage, GeoJSON; any CRS, e.g. EPSG:4326), or a label raster
            (``.tif``: values > 0 = landslide, its nodata excluded); a list of files of one kind is merged.
        dem: optional DEM raster(s) (any CRS and resolution), used with ``dem_mode: band | separate``.
        band_names: names of the imagery's bands in file order (default: band descriptions; RGB colour
            interpretation; ``red, green, blue`` for 3-band files; else ``band1 ... bandN``).
        bands: the bands fed to the model, by name (default: all).
        crs: CRS of the sampling grid (default: the first scene's); other scenes are warped on the fly.
        res: grid resolution in CRS units (default: the finest scene's); coarser scenes are resampled (logged).
        resampling: resampling of imagery warped or resampled onto the grid (``rasterio.enums.Resampling`` name).
        labels_layer: layer of a multi-layer vector file (default: the first).
        labels_crs: CRS of a label file that declares none (e.g. a Shapefile without ``.prj``).
        invalid_geometries: ``'repair'`` (``shapely.make_valid``, warned) or ``'error'``.
        split: ``'blocks'`` or ``'regions'``.
        block_size: block edge in pixels for ``split: blocks`` (a multiple of ``tile_size``).
        split_ratios: (train, val, test) shares of the blocks.
        split_regions: vector file of split polygons for ``split: regions``.
        split_attribute: its column naming the split (``train``/``val``/``test``).
        split_gap: pixels left out around the val/test areas (0 = adjacent areas).
        negative_ratio: share of landslide-free tiles in each training epoch.
        samples_per_epoch: training tiles per epoch (default: the number of non-overlapping tiles of the training
            area).
        min_valid_fraction: least share of a tile's pixels with data in every input (1.0: no nodata at all).
        scale: factor of the ``reference`` normalization (default 1/255 for uint8 imagery; required otherwise).
        stats_tiles: training tiles read at setup for ``normalization: dataset`` statistics.
        cache_dir: folder of the cached target rasters (default ``<tmp>/sam_cffnet_inventory``); reused while the
            inputs are unchanged (keyed by paths, sizes and modification times).
        progress: progress bars while building the cache.
        stride: step between training tile positions in pixels (default ``tile_size // 4``; must divide
            ``tile_size``); also the cell size of the split and tile bookkeeping.
        **kwargs: the shared options of :class:`~sam_cffnet.datamodules.base.LandslideDataModule` (tile_size,
            batch_size, num_workers, seed, shuffle, augment, normalization, dem_mode, mean/std overrides in raw
            units, ...).
    """

    dataset_name = 'inventory'

    def __init__(
        self,
        images: str | list[str],
        labels: str | list[str],
        dem: str | list[str] | None = None,
        band_names: list[str] | None = None,
        bands: list[str] | None = None,
        crs: str | None = None,
        res: float | None = None,
        resampling: str = 'bilinear',
        labels_layer: str | int | None = None,
        labels_crs: str | None = None,
        invalid_geometries: Literal['repair', 'error'] = 'repair',
        split: Literal['blocks', 'regions'] = 'blocks',
        block_size: int = 1024,
        split_ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
        split_regions: str | None = None,
        split_attribute: str = 'split',
        split_gap: int = 0,
        negative_ratio: float = 0.3,
        samples_per_epoch: int | None = None,
        min_valid_fraction: float = 1.0,
        scale: float | None = None,
        stats_tiles: int = 64,
        cache_dir: str | None = None,
        progress: bool = True,
        stride: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Store the settings. They and the files' headers are checked on first use (:meth:`check`: ``num_channels``,
        ``preprocessing``, ``setup``), which the CLI triggers right after building the datamodule: errors then reach
        the command line as one ``sam_cffnet: error:`` line. The heavy work happens in ``setup``."""
        tile = int(kwargs.get('tile_size') or 256)
        dem_mode = kwargs.get('dem_mode', 'none')
        # the base class refuses a DEM mode without DEM bands before our clearer message could: checked in check()
        self.dem_bands = ('dem',) if dem_mode != 'none' else ()
        self.images, self.labels, self.dem = images, labels, dem
        self.band_names_arg, self.bands_arg = band_names, bands
        self.crs_arg, self.res_arg, self.resampling = crs, res, resampling
        self.labels_layer, self.labels_crs, self.invalid_geometries = labels_layer, labels_crs, invalid_geometries
        self.scale_arg, self.cache_dir, self.progress = scale, cache_dir, progress
        stride = _default_stride(tile) if stride is None else int(stride)
        root = str(images if isinstance(images, str) else (list(images) or [''])[0])
        super().__init__(InventoryTiles, root=root, stride=stride, **kwargs)
        self.split_mode = split
        self.block_size = int(block_size)
        self.split_ratios = tuple(float(r) for r in split_ratios)
        self.split_regions = split_regions
        self.split_attribute = split_attribute
        self.split_gap = int(split_gap)
        self.negative_ratio = float(negative_ratio)
        self.samples_per_epoch = samples_per_epoch
        self.min_valid_fraction = float(min_valid_fraction)
        self.stats_tiles = int(stats_tiles)
        self.stats_source = 'computed from the training tiles at setup'
        self.split_cells: np.ndarray | None = None
        #: the tiles of each split (after ``setup``): ``InventoryTiles`` with ``bounds(i)``, ``to_geodataframe()``
        self.tiles: dict[str, InventoryTiles] = {}
        self._train_positive = np.zeros(0, bool)
        self._train_length = 0
        self.split_plot: Path | None = None
        self._inventory: LandslideInventory | None = None
        self._band_stats: dict[str, tuple[float, float]] = {}
        self.selected_bands: tuple[str, ...] = ()
        self.reference_scale = 1 / 255
        self.save_hyperparameters()

    def check(self) -> LandslideInventory:
        """Check the settings and read the headers of the input files (once); returns the inventory.

        Raises:
            ConfigError: a setting out of range or inconsistent (stride, block_size, ratios, bands, scale, DEM mode).
            MissingFileError: ``images``/``labels``/``dem`` name nothing that exists.
            DataError: unreadable or ungeoreferenced rasters, scenes with different band counts or data types.
        """
        if self._inventory is not None:
            return self._inventory
        tile, stride = self.tile_size, self.stride
        if tile % stride:
            raise ConfigError(f'data.init_args.stride ({stride}) must divide tile_size ({tile})')
        if self.split_mode not in ('blocks', 'regions'):
            raise ConfigError(f"data.init_args.split must be 'blocks' or 'regions', got {self.split_mode!r}")
        if self.split_mode == 'blocks' and (self.block_size <= 0 or self.block_size % tile):
            raise ConfigError(
                f'data.init_args.block_size ({self.block_size}) must be a positive multiple of tile_size ({tile})'
            )
        if self.split_mode == 'regions' and not self.split_regions:
            raise ConfigError('data.init_args.split: regions needs data.init_args.split_regions (a polygon file)')
        ratios = self.split_ratios
        if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
            raise ConfigError(f'data.init_args.split_ratios must be 3 shares >= 0 (train, val, test), got {ratios}')
        if not 0 <= self.negative_ratio <= 1:
            raise ConfigError(f'data.init_args.negative_ratio must be in [0, 1], got {self.negative_ratio}')
        if not 0 < self.min_valid_fraction <= 1:
            raise ConfigError(f'data.init_args.min_valid_fraction must be in (0, 1], got {self.min_valid_fraction}')
        if self.samples_per_epoch is not None and self.samples_per_epoch <= 0:
            raise ConfigError(f'data.init_args.samples_per_epoch must be positive, got {self.samples_per_epoch}')
        if self.split_gap < 0:
            raise ConfigError(f'data.init_args.split_gap must be >= 0, got {self.split_gap}')
        if self.dem_mode != 'none' and not self.dem:
            raise ConfigError(f'data.init_args.dem_mode={self.dem_mode!r} needs data.init_args.dem (a DEM raster)')
        inventory = LandslideInventory(
            self.images, self.labels, self.dem if self.dem_bands else None, crs=self.crs_arg, res=self.res_arg,
            resampling=self.resampling, band_names=self.band_names_arg, labels_layer=self.labels_layer,
            labels_crs=self.labels_crs, invalid_geometries=self.invalid_geometries, cell=stride,
            cache_dir=self.cache_dir, info=rank_zero_info, warn=self._warn, progress=self.progress,
        )  # fmt: skip
        all_bands = inventory.band_names
        bands = self.bands_arg
        if bands is not None:
            unknown = [b for b in bands if b not in all_bands]
            if unknown or not bands:
                raise ConfigError(
                    f'data.init_args.bands: {unknown or bands} not among the imagery bands {list(all_bands)} '
                    f'({inventory.band_names_source})'
                )
        scale = self.scale_arg
        if scale is None and inventory.dtype == 'uint8':
            scale = 1 / 255
        if self.normalization == 'reference' and scale is None:
            raise ConfigError(
                f'data.init_args.scale: the imagery is {inventory.dtype}; normalization "reference" (x * scale clipped '
                f'to [0, 1]) needs the scale that maps it to [0, 1] (e.g. 0.0001 for Sentinel-2 L2A reflectance), or '
                f'use normalization: dataset (mean/std from your imagery)'
            )
        self.selected_bands = tuple(bands or all_bands)
        self._band_stats = {b: (0.0, 1.0) for b in all_bands}
        self.reference_scale = float(scale) if scale is not None else 1 / 255
        self.reference_note = f'x * {self.reference_scale:g} clipped to [0, 1], no mean/std ({inventory.dtype} imagery)'
        if self.dem and not self.dem_bands:
            rank_zero_info('data.init_args.dem is given but dem_mode is "none": the DEM is not used')
        self._inventory = inventory
        return inventory

    @property
    def inventory(self) -> LandslideInventory:
        """The checked inputs (:class:`~sam_cffnet.datasets.inventory.LandslideInventory`)."""
        return self.check()

    @property  # type: ignore[override]
    def band_stats(self) -> dict[str, tuple[float, float]]:
        """Every imagery band -> ``(mean, std)`` in raw units (computed at setup for ``normalization: dataset``)."""
        self.check()
        return self._band_stats

    @property
    def preprocessing(self) -> Preprocessing:
        """The input pipeline (see the module docstring); checks the settings first."""
        self.check()
        return super().preprocessing

    # ------------------------------------------------------------------ bands
    @property
    def bands(self) -> list[str]:
        """Names of the bands in ``batch['image']`` (before DEM channels)."""
        self.check()
        return list(self.selected_bands)

    @property
    def band_indices(self) -> list[int]:
        """Positions of :attr:`bands` among the imagery's bands."""
        return [self.inventory.band_names.index(b) for b in self.bands]

    # ------------------------------------------------------------------ splits
    def _split_by_blocks(self, valid: np.ndarray, landslide: np.ndarray) -> np.ndarray:
        cell = self.inventory.cell
        kb = self.block_size // cell
        rows, cols = valid.shape
        br, bc = math.ceil(rows / kb), math.ceil(cols / kb)

        def per_block(a: np.ndarray) -> np.ndarray:
            padded = np.zeros((br * kb, bc * kb), np.int64)
            padded[:rows, :cols] = a
            return padded.reshape(br, kb, bc, kb).sum((1, 3))

        bvalid, bland = per_block(valid), per_block(landslide)
        blocks = np.argwhere(bvalid > 0)
        wanted = [s for s, r in enumerate(self.split_ratios) if r > 0]
        if len(blocks) < len(wanted):
            raise ConfigError(
                f'data.init_args.block_size: only {len(blocks)} block(s) of {self.block_size} px hold data, fewer than '
                f'the {len(wanted)} splits; use a smaller block_size (a multiple of tile_size {self.tile_size})'
            )
        has_land = bland[blocks[:, 0], blocks[:, 1]] > 0
        parts = split_indices(len(blocks), self.split_ratios, self.seed, groups=has_land.tolist())
        for s in wanted:  # every split with a positive share gets at least one block
            if not parts[s]:
                donor = max(range(3), key=lambda p: len(parts[p]))
                parts[s].append(parts[donor].pop())
        block_split = np.full((br, bc), -1, np.int8)
        for s, idx in enumerate(parts):
            block_split[blocks[idx, 0], blocks[idx, 1]] = s
        self.split_info['blocks'] = {SPLITS[s]: len(p) for s, p in enumerate(parts)}
        self.split_info['blocks_with_landslides'] = {SPLITS[s]: int(has_land[p].sum()) for s, p in enumerate(parts)}
        return np.repeat(np.repeat(block_split, kb, 0), kb, 1)[:rows, :cols]

    def _split_by_regions(self, valid: np.ndarray) -> np.ndarray:
        import geopandas as gpd
        import shapely

        path = self.split_regions
        assert path is not None
        where = f'data.init_args.split_regions: {path}'
        if not Path(path).is_file():
            from ..errors import MissingFileError

            raise MissingFileError(f'{where} does not exist')
        try:
            frame = gpd.read_file(path)
        except Exception as err:
            raise DataError(f'{where} cannot be read as a vector file ({err})') from err
        if self.split_attribute not in frame.columns:
            raise DataError(
                f'{where} has no column {self.split_attribute!r} (columns: '
                f'{[c for c in frame.columns if c != "geometry"]}); set data.init_args.split_attribute'
            )
        if frame.crs is None:
            raise DataError(f'{where} has no CRS')
        names = frame[self.split_attribute].astype(str).str.strip().str.lower()
        unknown = sorted(set(names) - set(SPLITS))
        if unknown:
            self._warn(f'{where}: values {unknown} of {self.split_attribute!r} are not train/val/test; ignored')
        grid = self.inventory.grid
        assert grid is not None
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

    def _build_splits(self) -> dict[str, Dataset[dict[str, Tensor]] | None]:
        inv = self.inventory.build()
        grid = inv.grid
        assert grid is not None and inv.valid_cells is not None and inv.landslide_cells is not None
        valid, landslide = inv.valid_cells, inv.landslide_cells
        split = (
            self._split_by_blocks(valid, landslide) if self.split_mode == 'blocks' else self._split_by_regions(valid)
        )
        gap = math.ceil(self.split_gap / grid.cell)
        if gap:
            for s in (1, 2):
                others = (split >= 0) & (split != s)
                split[(split == s) & _dilate(others, gap)] = -1
        self.split_cells = split
        k = self.tile_size // grid.cell
        need = math.ceil(self.min_valid_fraction * self.tile_size**2 - 1e-9)
        valid_t = window_sums(valid, k)
        land_t = window_sums(landslide, k)
        ok = valid_t >= need
        rows_t, cols_t = np.indices(valid_t.shape) if valid_t.size else (np.zeros((0, 0), int),) * 2
        aligned = (rows_t % k == 0) & (cols_t % k == 0)
        datasets: dict[str, InventoryTiles] = {}
        positions: dict[str, np.ndarray] = {}
        dataset = inv.dataset(self.bands, cache=True)
        for s, name in enumerate(SPLITS):
            inside = window_sums(split == s, k) == k * k if valid_t.size else np.zeros((0, 0), bool)
            chosen = inside & ok if name == 'train' else inside & ok & aligned
            cells = np.argwhere(chosen)
            positions[name] = cells
            datasets[name] = InventoryTiles(
                dataset, grid, cells * grid.cell, self.tile_size, land_t[cells[:, 0], cells[:, 1]] > 0
            )
            if name == 'train':
                self._train_positive = datasets[name].positive
                self._train_length = self.samples_per_epoch or int((chosen & aligned).sum()) or len(cells)
        self.tiles = datasets
        self._log_splits(split, positions, datasets, k)
        if self.normalization == 'dataset' and self.mean_override is None:
            self._compute_statistics(positions['train'], aligned)
        self._write_outputs(datasets)
        return {'train': datasets['train'], 'val': datasets['val'], 'test': datasets['test'],
                'predict': datasets['test']}  # fmt: skip

    def _log_splits(
        self, split: np.ndarray, positions: dict[str, np.ndarray], datasets: dict[str, InventoryTiles], k: int
    ) -> None:
        inv = self.inventory
        grid = inv.grid
        assert grid is not None and inv.valid_cells is not None and inv.landslide_cells is not None
        px = grid.pixel_area_km2()[:, None]
        valid_km2 = inv.valid_cells * px
        land_km2 = inv.landslide_cells * px
        total = float(valid_km2.sum())
        how = (
            f'blocks of {self.block_size} px ({self.block_size * grid.res[0]:g} {_unit(grid)}), ratios '
            f'{"/".join(f"{r:g}" for r in self.split_ratios)}, seed {self.seed}'
            if self.split_mode == 'blocks'
            else f'regions of {self.split_regions} ({self.split_attribute!r})'
        )
        lines = [f'inventory split by {how}; gap {self.split_gap} px; {total:.4f} km² with data:']
        areas: dict[str, Any] = {}
        for s, name in enumerate(SPLITS):
            here = split == s
            cover = np.zeros(split.shape, bool)
            if len(positions[name]):
                starts = np.zeros(split.shape, np.int64)
                starts[positions[name][:, 0], positions[name][:, 1]] = 1
                padded = np.pad(starts, ((k - 1, 0), (k - 1, 0)))
                cover = window_sums(padded, k) > 0
            tiles = datasets[name]
            areas[name] = {
                'area_km2': float(valid_km2[here].sum()), 'landslide_km2': float(land_km2[here].sum()),
                'tiled_area_km2': float(valid_km2[cover].sum()), 'tiles': len(tiles),
                'tiles_with_landslides': int(tiles.positive.sum()),
            }  # fmt: skip
            a = areas[name]
            share = 100 * a['area_km2'] / total if total else 0.0
            what = 'training positions' if name == 'train' else 'tiles'
            lines.append(
                f'  {name:<5} {a["area_km2"]:.4f} km² ({share:.1f} %), landslides {a["landslide_km2"]:.4f} km²; '
                f'{a["tiled_area_km2"]:.4f} km² in tiles: {a["tiles"]} {what} ({a["tiles_with_landslides"]} with '
                f'landslides)'
            )
        unused = float(valid_km2[split < 0].sum())
        lines.append(f'  left out (gap, blocks without data, cut cells): {unused:.4f} km²')
        if len(positions['train']):
            sampler = self._train_sampler()
            n_pos, n_neg = sampler.counts()
            lines.append(
                f'  training epoch: {sampler.length} tiles = {n_pos} with landslides + {n_neg} landslide-free '
                f'(negative_ratio {self.negative_ratio:g}), drawn per (seed, epoch)'
            )
            if not datasets['train'].positive.any():
                self._warn('inventory: no training tile holds a landslide; training sees landslide-free tiles only')
        rank_zero_info('\n'.join(lines))
        self.split_info.update({'split': self.split_mode, 'areas': areas, 'unused_km2': unused, 'test_split': 'test',
                                'area_with_data_km2': total})  # fmt: skip

    def _train_sampler(self) -> BalancedTileSampler:
        """The sampler of the training tiles (after ``setup``)."""
        return BalancedTileSampler(self._train_positive, self._train_length, self.negative_ratio, self.seed,
                                   self.shuffle)  # fmt: skip

    def _compute_statistics(self, train_cells: np.ndarray, aligned: np.ndarray) -> None:
        grid = self.inventory.grid
        assert grid is not None
        pick = train_cells[aligned[train_cells[:, 0], train_cells[:, 1]]] if len(train_cells) else train_cells
        if not len(pick):
            pick = train_cells
        if not len(pick):
            return
        rng = np.random.default_rng(self.seed)
        pick = pick[np.sort(rng.permutation(len(pick))[: self.stats_tiles])]
        reader = InventoryTiles(self.inventory.dataset(self.bands, cache=False), grid, pick * grid.cell,
                                self.tile_size, np.zeros(len(pick), bool))  # fmt: skip
        total = np.zeros(len(self.bands))
        total_sq = np.zeros(len(self.bands))
        count = 0
        for i in range(len(reader)):
            image = reader[i]['image'].double().numpy().reshape(len(self.bands), -1)
            total += image.sum(1)
            total_sq += (image**2).sum(1)
            count += image.shape[1]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0))
        flat = [b for b, s in zip(self.bands, std, strict=True) if s <= 0]
        if flat:
            self._warn(f'inventory: bands {flat} are constant over the training tiles; their std is set to 1')
        std = np.where(std > 0, std, 1.0)
        for b, m, s in zip(self.bands, mean, std, strict=True):
            self.band_stats[b] = (float(m), float(s))
        self.stats_source = f'computed at setup from {len(reader)} training tiles ({count:,} pixels per band)'
        rank_zero_info(
            'inventory statistics (raw units): '
            + ', '.join(f'{b} {m:.2f} +- {s:.2f}' for b, m, s in zip(self.bands, mean, std, strict=True))
        )

    def _write_outputs(self, datasets: dict[str, InventoryTiles]) -> None:
        """A picture of the splits and the predict tiles' boxes, next to the cached targets (rank 0 only)."""
        folder = self.inventory.cache_folder
        if folder is None or (self.trainer is not None and not self.trainer.is_global_zero):
            return
        key = hashlib.sha1(
            json.dumps([self.split_mode, self.block_size, self.split_ratios, self.seed, self.split_regions,
                        self.split_attribute, self.split_gap, self.tile_size, self.min_valid_fraction],
                       default=str).encode()
        ).hexdigest()[:10]  # fmt: skip
        picture = folder / f'splits_{key}.png'
        if not picture.is_file():
            import matplotlib.pyplot as plt

            fig = self.plot_splits()
            fig.savefig(picture, dpi=100, bbox_inches='tight')
            plt.close(fig)
        boxes = folder / f'predict_tiles_{key}.geojson'
        if not boxes.is_file() and len(datasets['test']):
            datasets['test'].to_geodataframe().to_file(boxes, driver='GeoJSON')
        self.split_plot = picture
        self.split_info.update({'split_plot': str(picture), 'predict_tiles': str(boxes)})
        rank_zero_info(f'inventory: picture of the splits: {picture}; predict tile index -> bounds: {boxes}')

    def plot_splits(self) -> Any:
        """A map of the splits: train/val/test areas, tiles of val/test, landslides, and areas without data.

        Returns:
            A matplotlib figure (after ``setup``).
        """
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch, Rectangle

        inv = self.inventory
        grid, split = inv.grid, self.split_cells
        if grid is None or split is None or inv.valid_cells is None or inv.landslide_cells is None:
            raise RuntimeError('plot_splits() needs setup() first')
        colors = np.array([[0.27, 0.51, 0.71], [0.95, 0.61, 0.07], [0.3, 0.69, 0.29]])
        rgb = np.ones((*split.shape, 3)) * 0.85
        for s in range(3):
            rgb[split == s] = colors[s]
        rgb[(split < 0) & (inv.valid_cells > 0)] = 0.6
        rgb[inv.valid_cells == 0] = 1.0
        share = np.clip(2.0 * inv.landslide_cells / grid.cell**2, 0, 1)[..., None]  # landslide share of each cell
        rgb = rgb * (1 - share) + np.array([0.6, 0.0, 0.0]) * share
        xmin, ymin, xmax, ymax = grid.bounds(0, 0, grid.height, grid.width)
        fig, ax = plt.subplots(figsize=(8, 8 * grid.height / max(grid.width, 1) + 0.8))
        ax.imshow(rgb, extent=(xmin, xmax, ymin, ymax), interpolation='nearest')
        for name in ('val', 'test'):
            tiles = self.tiles.get(name)
            if tiles is not None:
                for i in range(len(tiles)):
                    x0, y0, x1, y1 = tiles.bounds(i)
                    ax.add_patch(
                        Rectangle(
                            (x0, y0), x1 - x0, y1 - y0, fill=False, lw=0.8, ec='k', ls='-' if name == 'val' else '--'
                        )
                    )
        areas = self.split_info.get('areas', {})
        labels = [f'{n}: {areas.get(n, {}).get("area_km2", 0):.3f} km²' for n in SPLITS]
        handles = [Patch(color=colors[s], label=labels[s]) for s in range(3)]
        handles += [Patch(color=(0.6, 0, 0), label='landslides'), Patch(color=(0.6,) * 3, label='left out'),
                    Patch(color=(1.0,) * 3, ec='k', label='no data')]  # fmt: skip
        ax.legend(handles=handles, loc='upper center', bbox_to_anchor=(0.5, -0.06), ncol=3, fontsize=8)
        ax.set_title(
            f'inventory splits ({self.split_mode}, seed {self.seed}); boxes: val (solid) and test (dashed) tiles',
            fontsize=9,
        )
        ax.ticklabel_format(useOffset=False, style='plain')
        ax.tick_params(labelsize=7)
        return fig

    # ------------------------------------------------------------------ setup and loaders
    def setup(self, stage: str) -> None:
        """Build the inventory (once), the splits and their tiles; check that the stage's splits hold tiles.

        Args:
            stage: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.

        Raises:
            ConfigError: a split the stage uses holds no tile.
        """
        super().setup(stage)
        assert self._splits is not None
        for name in STAGE_SPLITS.get(stage, ()):
            tiles = self._splits[name]
            if tiles is None or len(tiles) == 0:
                shown = 'test' if name == 'predict' else name
                raise ConfigError(
                    f'inventory: the {shown} split holds no tile of {self.tile_size} px with >= '
                    f'{100 * self.min_valid_fraction:g} % data (see the split log above); use a smaller tile_size or '
                    f'block_size, other split_ratios / split_regions, a lower min_valid_fraction or a smaller split_gap'
                )

    def _dataloader_factory(self, split: str) -> DataLoader[dict[str, Tensor]]:
        if split != 'train':
            return super()._dataloader_factory(split)
        dataset = self._valid_attribute('train_dataset', 'dataset')
        batch_size = self._valid_attribute('train_batch_size', 'batch_size')
        sampler = self._train_sampler()
        return DataLoader(
            dataset=dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            drop_last=len(sampler) >= batch_size,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )


def _unit(grid: Any) -> str:
    crs = grid.crs
    unit = crs.axis_info[0].unit_name if crs.axis_info else ''
    return {'metre': 'm', 'meter': 'm', 'degree': 'deg'}.get(unit, unit)
