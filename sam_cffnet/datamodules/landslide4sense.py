"""LightningDataModule for Landslide4Sense (official splits, 128 px patches brought to ``tile_size``)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import Dataset

from ..datasets.errors import LayoutNotFoundError
from ..datasets.landslide4sense import BandSpec, Landslide4Sense
from ..errors import ConfigError
from .base import LandslideDataModule, SplitView, split_indices

_MEAN = (0.9257, 0.9227, 0.9541, 0.9596, 1.0228, 1.0426, 1.0358, 1.0468, 1.1699, 1.1736, 1.0495, 1.0370, 1.2511, 1.6495)
_STD = (0.194, 0.2693, 0.345, 0.6155, 0.4385, 0.2877, 0.2786, 0.3079, 0.7654, 7.8715, 0.5019, 0.8358, 0.6478, 1.3595)


class Landslide4SenseDataModule(LandslideDataModule):
    """Landslide4Sense datamodule.

    Splits: the official ones (``TrainData`` -> train, ``ValidData`` -> val, ``TestData`` -> test) when their masks
    are on disk (Zenodo release). When ``ValidData``/``TestData`` have no masks (competition release), a seeded
    random ``val_ratio`` / ``test_ratio`` of ``TrainData`` is held out instead, and this is logged. ``predict`` uses
    the official ``predict_split`` folder, masks or not.

    Patches (128 x 128) are resized to ``tile_size`` on the device after transfer (bilinear image/DEM, nearest
    mask); the reference recipe used 256 (its method is unknown).

    Normalization:

    * ``'reference'`` (sister-project recipe): ``clip(img / 10 * 255, 0, 255) / 255`` = ``clip(img * 0.1, 0, 1)``.
    * ``'dataset'``: per-band mean/std in raw file units. Means: raw TrainData means (mean of per-image means over
      the 3799 train patches, third-party Kaggle EDA, spec/datasets.md section 2). Stds: global pixel std over the
      8 real TestData patches in shared/data/real (measured by us; small sample, B10 inflated by hazy patches) --
      the EDA's stds are within-image and underestimate the global spread. The official constants of
      ``landslide_dataset.py`` do not match the raw files (see the spec), so they are not used; pass ``mean``/``std``
      to use them or your own.
    * slope/DEM under ``dem_mode`` 'band'/'separate': per-tile z-score.
    """

    dataset_name = 'landslide4sense'
    band_stats: ClassVar[dict[str, tuple[float, float]]] = dict(
        zip(Landslide4Sense.all_bands, zip(_MEAN, _STD, strict=True), strict=True)
    )
    stats_source = (
        'L4S means: raw TrainData per-band means (mean of per-image means, 3799 patches, Kaggle EDA, '
        'spec/datasets.md section 2); stds: global std over 8 real TestData patches measured by sam_cffnet'
    )
    reference_scale = 0.1
    reference_clip = (0.0, 1.0)
    reference_note = 'clip(img / 10 * 255, 0, 255) / 255 = clip(img * 0.1, 0, 1), no mean/std (sister project recipe)'
    dem_bands = Landslide4Sense.dem_bands
    rgb_bands = Landslide4Sense.rgb_bands

    def __init__(
        self,
        root: str = 'data',
        bands: BandSpec = 'rgb',
        val_ratio: float = 0.1,
        test_ratio: float = 0.1,
        predict_split: Literal['test', 'val'] = 'test',
        nan_policy: Literal['fill', 'error'] = 'fill',
        **kwargs: Any,
    ) -> None:
        """Configure the datamodule (files are indexed and checked in ``setup``).

        Args:
            root: Folder holding ``TrainData/``, ``ValidData/``, ``TestData/``.
            bands: ``'rgb'`` (B4, B3, B2; reference), ``'all'`` (14) or a list of names / 0-based indices.
            val_ratio: Fraction of TrainData held out for val when ValidData has no masks.
            test_ratio: Fraction of TrainData held out for test when TestData has no masks.
            predict_split: Official folder used by ``predict`` (``'test'`` = TestData).
            nan_policy: ``'fill'`` (0 + warning) or ``'error'``.
            **kwargs: the shared options of :class:`~sam_cffnet.datamodules.base.LandslideDataModule` (tile_size
                (patches are 128 px, resized on the device), batch_size, num_workers, seed, shuffle, augment,
                normalization, dem_mode ('band': append slope, dem; 'separate': ``batch['dem']``, 2 channels),
                mean/std overrides of the selected bands in raw units, verify, ...).
        """
        if kwargs.get('stride') is not None:
            raise ConfigError('Landslide4Sense patches are used whole: stride does not apply')
        self._band_indices = Landslide4Sense.resolve_bands(bands)
        super().__init__(Landslide4Sense, root=root, **kwargs)
        self.band_spec = bands
        if self.dem_mode != 'none' and set(self._band_indices) & {12, 13}:
            raise ConfigError(f'dem_mode={self.dem_mode!r} adds slope/dem: remove them from bands')
        self.val_ratio = val_ratio
        self.test_ratio = test_ratio
        self.predict_split = predict_split
        self.nan_policy = nan_policy
        self.save_hyperparameters()

    @property
    def bands(self) -> list[str]:
        """Selected band names (before any DEM channels)."""
        return [Landslide4Sense.all_bands[i] for i in self._band_indices]

    @property
    def band_indices(self) -> list[int]:
        """0-based indices of the selected bands among the 14 L4S bands."""
        return list(self._band_indices)

    def _dataset(self, split: str, require_masks: bool = False) -> Landslide4Sense:
        return Landslide4Sense(
            self.root, split=split, bands=self._band_indices,  # type: ignore[arg-type]
            dem_mode='separate' if self.dem_mode != 'none' else 'none', require_masks=require_masks,
            nan_policy=self.nan_policy, verify=self.verify,
        )  # fmt: skip

    def _build_splits(self) -> dict[str, Dataset[dict[str, Tensor]] | None]:
        official: dict[str, Landslide4Sense | None] = {}
        for split in ('val', 'test'):
            try:
                official[split] = self._dataset(split)
            except LayoutNotFoundError:
                official[split] = None
        carve = {s: (official[s] is None or not official[s].has_masks) for s in ('val', 'test')}  # type: ignore[union-attr]
        try:
            train_full: Landslide4Sense | None = self._dataset('train', require_masks=True)
        except LayoutNotFoundError as err:
            if official[self.predict_split] is None:
                raise
            # prediction-only root (e.g. TestData/img alone): fit/validate/test raise this error in setup
            self._missing_error = err
            train_full = None
        out: dict[str, Dataset[dict[str, Tensor]] | None] = {'train': None, 'val': None, 'test': None}
        source = {'val': 'unavailable', 'test': 'unavailable'}
        n_train = 0
        if train_full is not None:
            ratios = [1.0 - self.val_ratio * carve['val'] - self.test_ratio * carve['test'],
                      self.val_ratio * carve['val'], self.test_ratio * carve['test']]  # fmt: skip
            train_idx, val_idx, test_idx = split_indices(len(train_full), ratios, self.seed)
            n_train = len(train_idx)
            out['train'] = SplitView(train_full, train_idx)
            for split, idx in (('val', val_idx), ('test', test_idx)):
                if carve[split]:
                    out[split] = SplitView(train_full, idx)
                    ratio = self.val_ratio if split == 'val' else self.test_ratio
                    source[split] = f'{len(idx)} TrainData patches held out (seed {self.seed}, ratio {ratio})'
        for split in ('val', 'test'):
            if not carve[split]:
                out[split] = official[split]
                source[split] = f'official {Landslide4Sense.split_dirs[split]} ({len(official[split])} patches)'  # type: ignore[arg-type]
        pred = official[self.predict_split]
        if pred is None:
            self._warn(f'L4S: no {Landslide4Sense.split_dirs[self.predict_split]}/img folder; predict uses test split')
            pred = out['test']
        out['predict'] = pred
        self.split_info.update({'split': 'official' if not any(carve.values()) else 'official + held-out',
                                'source': source, 'test_split': 'test'})  # fmt: skip
        rank_zero_info(
            f'Landslide4Sense split: train = {n_train} TrainData patches; val = {source["val"]}; '
            f'test = {source["test"]}; predict = {Landslide4Sense.split_dirs[self.predict_split]}; '
            f'bands = {self.bands}'
        )
        return out
