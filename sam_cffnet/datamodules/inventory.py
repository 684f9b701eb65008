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
from ..datasets.inventory.plotting import plot_splits
from ..datasets.inventory.samplers import grid_tiles, tiles_cover
from ..datasets.inventory.splits import SPLITS, block_split, leave_gap, region_split, split_areas
from ..datasets.inventory.tiles import band_statistics
from ..errors import ConfigError
from ..preprocessing import Preprocessing
from .base import STAGE_SPLITS, LandslideDataModule

__all__ = ['InventoryDataModule']


def _default_stride(tile_size: int) -> int:
    """The largest divisor of ``tile_size`` not above ``tile_size // 4``."""
    target = max(1, tile_size // 4)
    return max(d for d in range(1, target + 1) if tile_size % d == 0)


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
        """Store the settings.

        They and the files' headers are checked on first use (:meth:`check`: ``num_channels``, ``preprocessing``,
        ``setup``), which the CLI triggers right after building the datamodule: errors then reach the command line as
        one ``sam_cffnet: error:`` line. The heavy work happens in ``setup``.
        """
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

    # ------------------------------------------------------------------ splits and tiles
    def _split_cells(self) -> np.ndarray:
        """The split of every cell of the grid (blocks or regions, then the gap)."""
        inv = self.inventory
        grid = inv.grid
        assert grid is not None and inv.valid_cells is not None and inv.landslide_cells is not None
        if self.split_mode == 'blocks':
            split, info = block_split(inv.valid_cells, inv.landslide_cells, grid.cell, self.block_size,
                                      self.split_ratios, self.seed, self.tile_size)  # fmt: skip
            self.split_info.update(info)
        else:
            assert self.split_regions is not None
            split = region_split(inv.valid_cells, grid, self.split_regions, self.split_attribute, self._warn)
        return leave_gap(split, math.ceil(self.split_gap / grid.cell))

    def _build_splits(self) -> dict[str, Dataset[dict[str, Tensor]] | None]:
        inv = self.inventory.build()
        grid = inv.grid
        assert grid is not None and inv.valid_cells is not None and inv.landslide_cells is not None
        self.split_cells = split = self._split_cells()
        k = self.tile_size // grid.cell
        need = math.ceil(self.min_valid_fraction * self.tile_size**2 - 1e-9)
        land_t = window_sums(inv.landslide_cells, k)
        dataset = inv.dataset(self.bands, cache=True)
        # training tiles start at every cell, val/test/predict tiles form the non-overlapping grid
        positions = {name: grid_tiles(split == s, inv.valid_cells, k, 1 if name == 'train' else k, need)
                     for s, name in enumerate(SPLITS)}  # fmt: skip
        self.tiles = {
            name: InventoryTiles(dataset, grid, cells * grid.cell, self.tile_size, land_t[cells[:, 0], cells[:, 1]] > 0)
            for name, cells in positions.items()
        }
        train = positions['train']
        self._train_positive = self.tiles['train'].positive
        self._train_length = self.samples_per_epoch or int(_aligned(train, k).sum()) or len(train)
        self._log_splits(positions, k)
        if self.normalization == 'dataset' and self.mean_override is None:
            self._compute_statistics(train, k)
        self._write_outputs(self.tiles)
        tiles = self.tiles
        return {'train': tiles['train'], 'val': tiles['val'], 'test': tiles['test'], 'predict': tiles['test']}

    def _log_splits(self, positions: dict[str, np.ndarray], k: int) -> None:
        inv = self.inventory
        grid, split = inv.grid, self.split_cells
        assert grid is not None and split is not None and inv.valid_cells is not None
        assert inv.landslide_cells is not None
        pixel_km2 = grid.pixel_area_km2()
        areas, unused, total = split_areas(split, pixel_km2, inv.valid_cells, inv.landslide_cells)
        how = (
            f'blocks of {self.block_size} px ({self.block_size * grid.res[0]:g} {_unit(grid)}), ratios '
            f'{"/".join(f"{r:g}" for r in self.split_ratios)}, seed {self.seed}'
            if self.split_mode == 'blocks'
            else f'regions of {self.split_regions} ({self.split_attribute!r})'
        )
        lines = [f'inventory split by {how}; gap {self.split_gap} px; {total:.4f} km² with data:']
        for name in SPLITS:
            tiles = self.tiles[name]
            cover = tiles_cover(positions[name], split.shape, k)
            a = areas[name]
            a.update({
                'tiled_area_km2': float((inv.valid_cells * pixel_km2[:, None])[cover].sum()), 'tiles': len(tiles),
                'tiles_with_landslides': int(tiles.positive.sum()),
            })  # fmt: skip
            share = 100 * a['area_km2'] / total if total else 0.0
            what = 'training positions' if name == 'train' else 'tiles'
            lines.append(
                f'  {name:<5} {a["area_km2"]:.4f} km² ({share:.1f} %), landslides {a["landslide_km2"]:.4f} km²; '
                f'{a["tiled_area_km2"]:.4f} km² in tiles: {a["tiles"]} {what} ({a["tiles_with_landslides"]} with '
                f'landslides)'
            )
        lines.append(f'  left out (gap, blocks without data, cut cells): {unused:.4f} km²')
        if len(positions['train']):
            sampler = self._train_sampler()
            n_pos, n_neg = sampler.counts()
            lines.append(
                f'  training epoch: {sampler.length} tiles = {n_pos} with landslides + {n_neg} landslide-free '
                f'(negative_ratio {self.negative_ratio:g}), drawn per (seed, epoch)'
            )
            if not self.tiles['train'].positive.any():
                self._warn('inventory: no training tile holds a landslide; training sees landslide-free tiles only')
        rank_zero_info('\n'.join(lines))
        self.split_info.update({'split': self.split_mode, 'areas': areas, 'unused_km2': unused, 'test_split': 'test',
                                'area_with_data_km2': total})  # fmt: skip

    def _train_sampler(self) -> BalancedTileSampler:
        """The sampler of the training tiles (after ``setup``)."""
        return BalancedTileSampler(self._train_positive, self._train_length, self.negative_ratio, self.seed,
                                   self.shuffle)  # fmt: skip

    def _compute_statistics(self, train_cells: np.ndarray, k: int) -> None:
        """Band mean/std from up to ``stats_tiles`` training tiles (of the non-overlapping grid where there are)."""
        grid = self.inventory.grid
        assert grid is not None
        pick = train_cells[_aligned(train_cells, k)]
        if not len(pick):
            pick = train_cells
        if not len(pick):
            return
        rng = np.random.default_rng(self.seed)
        pick = pick[np.sort(rng.permutation(len(pick))[: self.stats_tiles])]
        reader = InventoryTiles(self.inventory.dataset(self.bands, cache=False), grid, pick * grid.cell,
                                self.tile_size, np.zeros(len(pick), bool))  # fmt: skip
        mean, std, count = band_statistics(reader)
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
        inv = self.inventory
        grid, split = inv.grid, self.split_cells
        if grid is None or split is None or inv.valid_cells is None or inv.landslide_cells is None:
            raise RuntimeError('plot_splits() needs setup() first')
        title = f'inventory splits ({self.split_mode}, seed {self.seed}); boxes: val (solid) and test (dashed) tiles'
        return plot_splits(grid, split, inv.valid_cells, inv.landslide_cells, self.tiles,
                           self.split_info.get('areas', {}), title)  # fmt: skip

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


def _aligned(cells: np.ndarray, k: int) -> np.ndarray:
    """Which of the ``(N, 2)`` top-left cells start a tile of the non-overlapping grid of ``k`` cells."""
    return (cells % k == 0).all(1) if len(cells) else np.zeros(0, bool)
