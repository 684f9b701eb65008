"""LightningDataModule for GVLM (17 large scenes cut into tiles by window; site-level or tile-level splits)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import Dataset

from ..datasets.gvlm import GVLM
from ..errors import ConfigError, DataError
from .base import IMAGENET_RGB_STATS, LandslideDataModule, SplitView, split_indices


class GVLMDataModule(LandslideDataModule):
    """GVLM datamodule.

    Scenes are cut into ``tile_size`` tiles by window (rasterio windowed reads, never a whole scene per sample).

    Splits (``split_mode``):

    * ``'site'`` (default): whole sites go to train / val / test (seeded shuffle of the sites found, counts from
      ``split_ratios``, at least one site each; or explicit ``train_sites``/``val_sites``/``test_sites``). No tile
      of a val/test site is seen in training. Training tiles use ``stride``; val/test tiles never overlap.
    * ``'tile'``: the reference's tile-level random split (GVLM's scripts: 256 px, no overlap, random 60/20/20),
      seeded here. Tiles of a scene land in several splits (spatial leakage), as in the paper. ``stride`` is
      ignored (tiles on a ``tile_size`` grid). No pixel is in two splits: where a scene's side is not a multiple
      of ``tile_size``, GVLM's tiling snaps the last tile of a row/column to the scene border, so it overlaps its
      grid neighbour; ``edge_tiles`` says what happens to these tiles (logged at setup):

      - ``'group'`` (default): each snapped edge tile is split together with the grid tile(s) it overlaps (groups of
        2 or, at a corner, 4 tiles are assigned to a split as one unit). Every scene pixel is used; the overlapping
        strips (narrower than a tile) are in two tiles of the same split (1.6 % of GVLM's pixels at 256 px, 269 of
        its 7,596 tiles are snapped; computed from the published scene sizes). Split ratios hold for the groups.
      - ``'drop'``: snapped edge tiles are not used, so tiles never overlap and each pixel is in at most one tile;
        the border strips narrower than a tile (1.9 % of GVLM's pixels at 256 px) are in no split.

      A zero test ratio (e.g. ``split_ratios: [0.7357, 0.2643, 0]``, the authors' 1977/710 train/val tiles and no
      test) makes the test split the val split, as in the paper (warned).

    ``predict`` uses the test split. The split in use is logged at setup and stored in ``split_info``.

    Normalization table: GVLM publishes no statistics and no real GVLM file was available to measure them;
    ``'dataset'`` uses the ImageNet RGB mean/std (x 255) as a documented stand-in (Google Earth RGB); pass
    ``mean``/``std`` to use measured values.
    """

    dataset_name = 'gvlm'
    band_stats: ClassVar[dict[str, tuple[float, float]]] = IMAGENET_RGB_STATS
    stats_source = 'ImageNet RGB mean/std x 255 (stand-in: no published GVLM statistics, no real files to measure)'

    def __init__(
        self,
        root: str = 'data',
        split_mode: Literal['site', 'tile'] = 'site',
        split_ratios: tuple[float, float, float] = (0.6, 0.2, 0.2),
        train_sites: list[str] | None = None,
        val_sites: list[str] | None = None,
        test_sites: list[str] | None = None,
        cache_dir: str | None = None,
        edge_tiles: Literal['group', 'drop'] = 'group',
        **kwargs: Any,
    ) -> None:
        """Configure the datamodule (files are indexed and checked in ``setup``).

        Args:
            root: Folder holding ``GVLM_Object_Extraction/`` (or that folder).
            split_mode: ``'site'`` or ``'tile'`` (see the class docstring).
            split_ratios: (train, val, test) ratios of sites (``'site'``) or tiles (``'tile'``).
            train_sites: Explicit training sites (``'site'`` mode; all three lists must be given together).
            val_sites: Explicit validation sites.
            test_sites: Explicit test sites.
            cache_dir: Folder for a one-time tiled-GeoTIFF copy of every scene (see :class:`GVLM`); strongly
                recommended for training with shuffling (PNG has no random access). None: read the PNGs directly.
            edge_tiles: ``'tile'`` mode only: ``'group'`` (snapped edge tiles go to the split of the tiles they
                overlap) or ``'drop'`` (snapped edge tiles are not used); see the class docstring.
            **kwargs: the shared options of :class:`~sam_cffnet.datamodules.base.LandslideDataModule` (tile_size,
                stride (training tiles of ``'site'`` mode), batch_size, num_workers, seed, shuffle, augment,
                normalization, mean/std overrides in 0..255 units, verify (CRC-check every PNG at setup), ...).
        """
        if kwargs.get('dem_mode', 'none') != 'none':
            raise ConfigError('GVLM has no DEM: dem_mode must be "none"')
        super().__init__(GVLM, root=root, **kwargs)
        if split_mode not in ('site', 'tile'):
            raise ConfigError(f"data.init_args.split_mode must be 'site' or 'tile', got {split_mode!r}")
        if edge_tiles not in ('group', 'drop'):
            raise ConfigError(f"data.init_args.edge_tiles must be 'group' or 'drop', got {edge_tiles!r}")
        if len(split_ratios) != 3:
            raise ConfigError(f'data.init_args.split_ratios needs (train, val, test), got {split_ratios}')
        explicit = [train_sites, val_sites, test_sites]
        if any(s is not None for s in explicit) and not all(s is not None for s in explicit):
            raise ConfigError('data.init_args: train_sites, val_sites and test_sites must be given together')
        if all(s is not None for s in explicit):
            if split_mode != 'site':
                raise ConfigError("data.init_args: explicit site lists need split_mode='site'")
            flat = [x for s in explicit for x in s]  # type: ignore[union-attr]
            if len(flat) != len(set(flat)):
                raise ConfigError(f'data.init_args: a site appears in two splits: {explicit}')
        self.split_mode = split_mode
        self.edge_tiles = edge_tiles
        self.split_ratios = tuple(split_ratios)
        self.site_lists = explicit if all(s is not None for s in explicit) else None
        self.cache_dir = cache_dir
        self.save_hyperparameters()

    def _build_splits(self) -> dict[str, Dataset[dict[str, Tensor]] | None]:
        full = GVLM(
            self.root, tile_size=self.tile_size, stride=self.tile_size, verify=self.verify, cache_dir=self.cache_dir
        )
        if self.split_mode == 'tile':
            return self._tile_split(full)
        if self.site_lists is not None:
            site_split = [list(s) for s in self.site_lists]  # type: ignore[union-attr]
            unknown = [s for part in site_split for s in part if s not in full.sites]
            if unknown:
                raise ConfigError(
                    f'data.init_args train_sites/val_sites/test_sites: GVLM sites {unknown} not found under '
                    f'{full.data_root} (found: {full.sites})'
                )
        else:
            n = len(full.sites)
            if n < 3:
                raise DataError(
                    f'{full.data_root}: GVLM split_mode="site" needs >= 3 sites, found {n}: {full.sites} (use '
                    f'split_mode="tile")'
                )
            import numpy as np

            order = [full.sites[i] for i in np.random.default_rng(self.seed).permutation(n)]
            r = np.asarray(self.split_ratios, dtype=float) / sum(self.split_ratios)
            n_test = max(1, round(r[2] * n))
            n_val = max(1, round(r[1] * n))
            n_train = n - n_val - n_test
            if n_train < 1:
                raise ConfigError(f'data.init_args.split_ratios {self.split_ratios} leave no training site among {n}')
            site_split = [sorted(order[:n_train]), sorted(order[n_train : n_train + n_val]), sorted(order[-n_test:])]
        train = GVLM(
            self.root,
            sites=site_split[0],
            tile_size=self.tile_size,
            stride=self.stride,
            verify=False,
            cache_dir=self.cache_dir,
        )
        val = GVLM(self.root, sites=site_split[1], tile_size=self.tile_size, verify=False, cache_dir=self.cache_dir)
        test = GVLM(self.root, sites=site_split[2], tile_size=self.tile_size, verify=False, cache_dir=self.cache_dir)
        self.split_info.update({'split': 'site', 'train_sites': site_split[0], 'val_sites': site_split[1],
                                'test_sites': site_split[2], 'test_split': 'test'})  # fmt: skip
        rank_zero_info(
            f'GVLM split: by site (train sites: {site_split[0]}, val: {site_split[1]}, test: {site_split[2]}); '
            f'tiles train={len(train)} (stride {self.stride}), val={len(val)}, test={len(test)}'
        )
        return {'train': train, 'val': val, 'test': test, 'predict': test}

    def _tile_split(self, full: GVLM) -> dict[str, Dataset[dict[str, Tensor]] | None]:
        """The tile-level split: groups of overlapping tiles (or grid tiles only) split at random, seeded."""
        if self.stride != self.tile_size:
            self._warn('GVLM split_mode="tile": stride ignored, tiles on a tile_size grid (no pixel in two splits)')
        t = self.tile_size
        groups: dict[tuple[int, int, int], list[int]] = {}
        edge = 0
        for i, (si, row, col) in enumerate(full.tiles):
            snapped = row % t != 0 or col % t != 0  # the last tile of a row/column, moved back to the scene border
            edge += snapped
            if snapped and self.edge_tiles == 'drop':
                continue
            # a snapped tile starts inside the last grid tile of its row/column: same key, same split
            groups.setdefault((si, row // t, col // t), []).append(i)
        keys = sorted(groups)
        parts = [
            sorted(i for g in part for i in groups[keys[g]])
            for part in split_indices(len(keys), self.split_ratios, self.seed)
        ]
        test_is_val = not parts[2]
        train, val = SplitView(full, parts[0]), SplitView(full, parts[1])
        test = val if test_is_val else SplitView(full, parts[2])
        edges = _edge_pixels(full, t, self.edge_tiles)
        if self.edge_tiles == 'group':
            edge_note = (
                f'{edge} edge tiles snapped to a scene border overlap their grid neighbours and are kept with them in '
                f'one split ({edges:,} scene pixels are in two tiles of the same split)'
            )
        else:
            edge_note = (
                f'{edge} edge tiles snapped to a scene border were dropped (edge_tiles="drop"); {edges:,} scene pixels '
                f'in border strips narrower than a tile are in no split'
            )
        self.split_info.update({'split': 'tile', 'test_split': 'val' if test_is_val else 'test',
                                'edge_tiles': self.edge_tiles, 'snapped_edge_tiles': edge,
                                'edge_pixels': edges})  # fmt: skip
        rank_zero_info(
            f'GVLM split: by tile (reference-style, random, seed={self.seed}, ratios={self.split_ratios}; tiles of '
            f'one site can be in several splits, no pixel is in two splits): train={len(train)}, val={len(val)}, '
            f'test={len(parts[2])} tiles from {len(full.sites)} sites; {edge_note}'
        )
        if test_is_val:
            self._warn('GVLM: the test ratio is 0, so test == val (as the paper: selected and reported on val)')
        return {'train': train, 'val': val, 'test': test, 'predict': test}


def _edge_pixels(full: GVLM, tile: int, mode: str) -> int:
    """Scene pixels in two tiles (``mode='group'``) or in no tile (``'drop'``) of the tile-mode tiling."""
    total = 0
    for site in full.sites:
        h, w = full.scene_shapes[site]
        once, covered = [], []  # per axis: pixels in exactly one tile; pixels in a grid tile
        for length in (h, w):
            if length <= tile:  # one tile at 0, zero-padded
                once.append(length)
                covered.append(length)
                continue
            rest = length % tile
            once.append(length - (tile - rest if rest else 0))  # the snapped tile overlaps tile - rest pixels
            covered.append(length - rest)
        total += h * w - (once[0] * once[1] if mode == 'group' else covered[0] * covered[1])
    return total
