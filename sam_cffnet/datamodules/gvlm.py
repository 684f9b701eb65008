"""LightningDataModule for GVLM (17 large scenes cut into tiles by window; site-level or tile-level splits)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import Dataset

from ..datasets.gvlm import GVLM
from ..errors import ConfigError
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
      ignored (non-overlapping grid) so that no pixel is in two splits.

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
            **kwargs: the shared options of :class:`~sam_cffnet.datamodules.base.LandslideDataModule` (tile_size,
                stride (training tiles of ``'site'`` mode), batch_size, num_workers, seed, shuffle, augment,
                normalization, mean/std overrides in 0..255 units, verify (CRC-check every PNG at setup), ...).
        """
        if kwargs.get('dem_mode', 'none') != 'none':
            raise ConfigError('GVLM has no DEM: dem_mode must be "none"')
        super().__init__(GVLM, root=root, **kwargs)
        if split_mode not in ('site', 'tile'):
            raise ValueError(f"split_mode must be 'site' or 'tile', got {split_mode!r}")
        explicit = [train_sites, val_sites, test_sites]
        if any(s is not None for s in explicit) and not all(s is not None for s in explicit):
            raise ValueError('train_sites, val_sites and test_sites must be given together')
        if all(s is not None for s in explicit):
            if split_mode != 'site':
                raise ValueError("explicit site lists need split_mode='site'")
            flat = [x for s in explicit for x in s]  # type: ignore[union-attr]
            if len(flat) != len(set(flat)):
                raise ValueError(f'a site appears in two splits: {explicit}')
        self.split_mode = split_mode
        self.split_ratios = tuple(split_ratios)
        self.site_lists = explicit if all(s is not None for s in explicit) else None
        self.cache_dir = cache_dir
        self.save_hyperparameters()

    def _build_splits(self) -> dict[str, Dataset[dict[str, Tensor]] | None]:
        full = GVLM(
            self.root, tile_size=self.tile_size, stride=self.tile_size, verify=self.verify, cache_dir=self.cache_dir
        )
        if self.split_mode == 'tile':
            if self.stride != self.tile_size:
                self._warn('GVLM split_mode="tile": stride ignored, tiles do not overlap (no pixel in two splits)')
            parts = split_indices(len(full), self.split_ratios, self.seed)
            train, val, test = (SplitView(full, p) for p in parts)
            self.split_info.update({'split': 'tile', 'test_split': 'test'})
            rank_zero_info(
                f'GVLM split: by tile (reference-style, random, seed={self.seed}, ratios={self.split_ratios}; '
                f'tiles of one site can be in several splits): train={len(train)}, val={len(val)}, '
                f'test={len(test)} tiles from {len(full.sites)} sites'
            )
            return {'train': train, 'val': val, 'test': test, 'predict': test}
        if self.site_lists is not None:
            site_split = [list(s) for s in self.site_lists]  # type: ignore[union-attr]
            unknown = [s for part in site_split for s in part if s not in full.sites]
            if unknown:
                raise ValueError(f'GVLM sites {unknown} not found under {full.data_root} (found: {full.sites})')
        else:
            n = len(full.sites)
            if n < 3:
                raise ValueError(f'GVLM split_mode="site" needs >= 3 sites, found {n}: {full.sites}')
            import numpy as np

            order = [full.sites[i] for i in np.random.default_rng(self.seed).permutation(n)]
            r = np.asarray(self.split_ratios, dtype=float) / sum(self.split_ratios)
            n_test = max(1, round(r[2] * n))
            n_val = max(1, round(r[1] * n))
            n_train = n - n_val - n_test
            if n_train < 1:
                raise ValueError(f'split_ratios {self.split_ratios} leave no training site among {n}')
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
