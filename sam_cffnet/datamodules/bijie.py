"""LightningDataModule for the Bijie landslide dataset (variable-size chips -> fixed tiles)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import Dataset

from ..datasets.bijie import Bijie
from ..datasets.samples import pad_to, tile_source_dict
from ..errors import ConfigError, DataError
from ..preprocessing import resize_sample
from ..tiling import tile_windows
from .base import LandslideDataModule, split_indices


class ChipTiles(Dataset[dict[str, Tensor]]):
    """Fixed-size tiles from variable-size chips.

    ``'resize'``: one tile per chip, the whole chip resized to ``tile_size`` (bilinear image/DEM, nearest mask).
    ``'pad'``: chips cut into ``tile_size`` windows with ``stride`` (last window snapped to the edge); chips
    smaller than a tile are zero-padded at the bottom/right (image 0, mask 0 = background).
    """

    def __init__(
        self, dataset: Bijie, chips: Sequence[int], tile_size: int, stride: int, mode: Literal['resize', 'pad']
    ) -> None:
        """Index the tiles.

        Args:
            dataset: The chip dataset (its ``sizes`` give chip shapes without decoding).
            chips: Chip indices of this split.
            tile_size: Tile edge.
            stride: Window step for ``'pad'``.
            mode: ``'resize'`` or ``'pad'``.
        """
        self.dataset = dataset
        self.tile_size = tile_size
        self.mode = mode
        self.tiles: list[tuple[int, int, int]] = []
        for c in chips:
            if mode == 'resize':
                self.tiles.append((c, 0, 0))
            else:
                h, w = dataset.sizes[c]
                self.tiles.extend((c, r, q) for r, q in tile_windows(h, w, tile_size, stride))
        self._per_chip = Counter(c for c, _, _ in self.tiles)
        stems = Counter(dataset.files[c]['image'].stem for c in range(len(dataset.files)))
        # a chip's name: its file name without extension (the category in front where both categories use it)
        self._names = {
            c: (stem if stems[stem] == 1 else f'{dataset.files[c]["image"].parent.parent.name}_{stem}')
            for c in self._per_chip
            for stem in [dataset.files[c]['image'].stem]
        }

    def __len__(self) -> int:
        """Number of tiles."""
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        """Return tile ``index``: ``image`` (C, T, T), ``mask`` (T, T)[, ``dem`` (1, T, T)]."""
        c, r, q = self.tiles[index]
        sample = self.dataset[c]
        t = self.tile_size
        if self.mode == 'resize':
            return resize_sample(sample, t, t)
        out = {}
        for k, v in sample.items():
            out[k] = pad_to(v[..., r : r + t, q : q + t], t, t)
        return out

    def tile_source(self, index: int) -> dict[str, Any]:
        """Where tile ``index`` comes from, for writers of predictions.

        The chip's name and size, and the tile's window in it (``None`` with ``'resize'``: the whole chip); see
        :func:`~sam_cffnet.datasets.samples.tile_source_dict`.
        """
        c, r, q = self.tiles[index]
        h, w = self.dataset.sizes[c]
        window = None if self.mode == 'resize' else (r, q, self.tile_size)
        return tile_source_dict(self._names[c], h, w, window, self._per_chip[c])

    def plot(self, *args: Any, **kwargs: Any) -> Any:
        """Delegate to :meth:`Bijie.plot`."""
        return self.dataset.plot(*args, **kwargs)


class BijieDataModule(LandslideDataModule):
    """Bijie datamodule: seeded stratified chip-level split, chips brought to ``tile_size`` tiles.

    Chips are split before tiling, so no chip contributes tiles to two splits. There is no official split.
    ``split_mode``:

    * ``'stratified'`` (default): train/val/test by ``split_ratios``, stratified by landslide / non-landslide,
      seeded (:func:`~sam_cffnet.datamodules.base.split_indices`).
    * ``'translandseg'``: the TransLandSeg authors' split (``train.py: make_data_loader``): landslide chips only
      (their ``Bijie/image`` folder holds the 770 landslide images), in sorted file-name order, indices shuffled by
      ``np.random.seed(seed); np.random.shuffle(indices)`` (their seed: 42), val = the first
      ``floor(val_fraction * n) + 1`` indices (``val_fraction`` = ``split_ratios[1]`` / sum, theirs 0.3), train =
      the rest; no test split. See :func:`translandseg_split`.

    A zero test ratio (always with ``'translandseg'``) makes the test split the val split, as the papers did
    (selected and reported on one split; warned). ``predict`` uses the test split.

    ``chip_mode='resize'`` (default; the reference brought chips to 256 offline by an unpublished method, resizing
    is the common practice) resizes each whole chip to one tile (aspect ratio not kept). ``chip_mode='pad'`` keeps
    the native 0.8 m resolution: chips are cut into windows (``stride``) and small chips zero-padded.

    Normalization table (raw 0..255 units): RGB mean/std over all 2773 images of the full dataset, pixel-weighted
    (verified facts in the project's datasets spec, computed on the Atharva1601 lossless re-encode of the Kaggle
    mirror): mean [75.94, 94.34, 80.46], std [38.77, 35.05, 33.51]. The DEM is normalized per tile (z-score).
    """

    dataset_name = 'bijie'
    band_stats: ClassVar[dict[str, tuple[float, float]]] = {
        'red': (75.94, 38.77),
        'green': (94.34, 35.05),
        'blue': (80.46, 33.51),
    }
    stats_source = (
        'Bijie RGB mean/std over all 2773 images (770 landslide + 2003 non-landslide), pixel-weighted, 0-255 '
        'scale, measured on the lossless Atharva1601 re-encode (spec/datasets.md section 1)'
    )
    dem_bands = ('dem',)

    def __init__(
        self,
        root: str = 'data',
        chip_mode: Literal['resize', 'pad'] = 'resize',
        split_ratios: tuple[float, float, float] = (0.7, 0.2, 0.1),
        split_mode: Literal['stratified', 'translandseg'] = 'stratified',
        **kwargs: Any,
    ) -> None:
        """Configure the datamodule (files are indexed and checked in ``setup``).

        Args:
            root: Bijie root as downloaded (the folder holding ``landslide/`` and ``non-landslide/`` or a parent
                holding ``Bijie-landslide-dataset/``).
            chip_mode: ``'resize'`` (one tile per chip) or ``'pad'`` (windows at ``stride`` + zero padding).
            split_ratios: (train, val, test) ratios of chips, stratified by category (``'translandseg'``: only the
                val fraction is used and the test ratio must be 0).
            split_mode: ``'stratified'`` or ``'translandseg'`` (see the class docstring).
            **kwargs: the shared options of :class:`~sam_cffnet.datamodules.base.LandslideDataModule` (tile_size,
                stride, batch_size, num_workers, seed, shuffle, augment, normalization ('reference' = /255,
                'dataset' = the table above), dem_mode ('band': 4th image channel; 'separate': ``batch['dem']``),
                mean/std overrides in 0..255 units, verify (CRC-check every PNG at setup), ...).
        """
        super().__init__(Bijie, root=root, **kwargs)
        if chip_mode not in ('resize', 'pad'):
            raise ConfigError(f"chip_mode must be 'resize' or 'pad', got {chip_mode!r}")
        if len(split_ratios) != 3 or min(split_ratios) < 0 or sum(split_ratios) <= 0:
            raise ConfigError(
                f'data.init_args.split_ratios needs three ratios (train, val, test) >= 0 with a positive sum, got '
                f'{split_ratios}'
            )
        if split_mode not in ('stratified', 'translandseg'):
            raise ConfigError(f"data.init_args.split_mode must be 'stratified' or 'translandseg', got {split_mode!r}")
        if split_mode == 'translandseg' and split_ratios[2] != 0:
            raise ConfigError(
                f'data.init_args.split_ratios {list(split_ratios)}: split_mode "translandseg" has no test split (the '
                f'authors used train/val only); use a test ratio of 0, e.g. [0.7, 0.3, 0]'
            )
        self.chip_mode = chip_mode
        self.split_mode = split_mode
        self.split_ratios = tuple(split_ratios)
        self.save_hyperparameters()

    def _build_splits(self) -> dict[str, Dataset[dict[str, Tensor]] | None]:
        dem = 'separate' if self.dem_mode != 'none' else 'none'
        ds = Bijie(self.root, dem_mode=dem, verify=self.verify)
        self.dataset_full = ds
        if self.split_mode == 'translandseg':
            landslide = sorted(
                (i for i, ls in enumerate(ds.is_landslide) if ls), key=lambda i: ds.files[i]['image'].name
            )
            if not landslide:
                raise DataError(f'{ds.data_root}: split_mode "translandseg" needs landslide chips, found none')
            fraction = self.split_ratios[1] / sum(self.split_ratios)
            train_pos, val_pos = translandseg_split(len(landslide), fraction, self.seed)
            # membership is theirs; the order within a split is the file order (their loaders sample at random)
            train, val, test = sorted(landslide[i] for i in train_pos), sorted(landslide[i] for i in val_pos), []
            how = (
                f'TransLandSeg (train.py): landslide chips only ({len(landslide)} of {len(ds)}), sorted by name, '
                f'np.random.seed({self.seed}) shuffle, val = first floor({fraction:g} n) + 1'
            )
        else:
            train, val, test = split_indices(len(ds), self.split_ratios, self.seed, groups=ds.is_landslide)
            how = f'random, stratified by category, seed={self.seed}, ratios={self.split_ratios}'
        test_is_val = not test
        self.split_info.update({'split': self.split_mode, 'chips': {'train': len(train), 'val': len(val),
                                'test': len(test)}, 'test_split': 'val' if test_is_val else 'test'})  # fmt: skip
        rank_zero_info(
            f'Bijie split: {how}: chips train={len(train)}, val={len(val)}, test={len(test)} '
            f'(chip_mode={self.chip_mode}); test split = {"val" if test_is_val else "test"}'
        )
        if test_is_val:
            self._warn(
                'Bijie: no test chips (test ratio 0), so test == val (as the papers: selected and reported on val)'
            )

        def make(idx: list[int]) -> ChipTiles:
            return ChipTiles(ds, idx, self.tile_size, self.stride, self.chip_mode)

        val_tiles = make(val)
        test_tiles = val_tiles if test_is_val else make(test)
        return {'train': make(train), 'val': val_tiles, 'test': test_tiles, 'predict': test_tiles}


def translandseg_split(n: int, val_fraction: float = 0.3, seed: int = 42) -> tuple[list[int], list[int]]:
    """The TransLandSeg authors' random train/val split of ``range(n)`` (``train.py: make_data_loader``).

    Exactly their ``indices = list(range(n)); np.random.seed(seed); np.random.shuffle(indices)``,
    ``split = int(np.floor(val_fraction * n)) + 1``, val = ``indices[:split]``, train = ``indices[split:]``, with a
    private ``RandomState`` (the same stream as the global one after ``np.random.seed``; the global state is left
    alone).

    Args:
        n: Number of items (their sorted image files).
        val_fraction: Their 0.3.
        seed: Their 42.

    Returns:
        ``(train, val)`` index lists in the shuffled order (not sorted).
    """
    indices = list(range(n))
    np.random.RandomState(seed).shuffle(indices)
    split = int(np.floor(val_fraction * n)) + 1
    return indices[split:], indices[:split]
