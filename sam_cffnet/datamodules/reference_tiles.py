"""LightningDataModule for the SAM-CFFNet authors' preprocessed H5 tiles (``<root>/{train,val}/*.h5``)."""

from __future__ import annotations

from typing import Any, ClassVar

from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import Dataset

from ..datasets.reference_tiles import ReferenceTiles
from ..errors import ConfigError
from .base import IMAGENET_RGB_STATS, LandslideDataModule, SplitView, split_indices


class ReferenceTilesDataModule(LandslideDataModule):
    """Datamodule over the authors' ``train/`` and ``val/`` H5 tiles.

    Only ``train`` and ``val`` exist on disk. As in the paper, test == val by default (the checkpoint is selected
    on val and val is reported): a warning says so at setup. Set ``holdout_ratio > 0`` to hold out a seeded
    fraction of the *train* tiles as a test split distinct from val. ``predict`` uses the test split.

    Tiles are used as stored (256 px in the authors' data); other sizes are resized to ``tile_size`` on the device.

    Normalization: ``'reference'`` = ``/255`` (exactly the authors' ``ToTensor``). ``'dataset'`` uses the ImageNet
    RGB mean/std (x 255) as a stand-in (the tiles may come from any of the three datasets); pass ``mean``/``std``.
    """

    dataset_name = 'reference_tiles'
    band_stats: ClassVar[dict[str, tuple[float, float]]] = IMAGENET_RGB_STATS
    stats_source = 'ImageNet RGB mean/std x 255 (stand-in for tiles of unspecified origin)'

    def __init__(self, root: str = 'data', holdout_ratio: float = 0.0, **kwargs: Any) -> None:
        """Configure the datamodule (files are indexed and checked in ``setup``).

        Args:
            root: Folder holding ``train/`` and ``val/``.
            holdout_ratio: Fraction of train tiles held out as a distinct test split (0: test == val, as the paper).
            **kwargs: the shared options of :class:`~sam_cffnet.datamodules.base.LandslideDataModule` (tile_size,
                batch_size, num_workers, seed, shuffle (False = the authors' sorted order), drop_last_eval (True = the
                authors' val loader), augment, normalization ('reference' = /255, the authors' ``ToTensor``),
                mean/std, verify, ...).
        """
        if kwargs.get('dem_mode', 'none') != 'none':
            raise ConfigError('the reference tiles have no DEM: dem_mode must be "none"')
        super().__init__(ReferenceTiles, root=root, **kwargs)
        if not 0.0 <= holdout_ratio < 1.0:
            raise ConfigError(f'holdout_ratio must be in [0, 1), got {holdout_ratio}')
        self.holdout_ratio = holdout_ratio
        self.save_hyperparameters()

    def _build_splits(self) -> dict[str, Dataset[dict[str, Tensor]] | None]:
        train_full = ReferenceTiles(self.root, 'train', verify=self.verify)
        val = ReferenceTiles(self.root, 'val', verify=self.verify)
        if self.holdout_ratio > 0:
            tr, te = split_indices(len(train_full), [1 - self.holdout_ratio, self.holdout_ratio], self.seed)
            train: Dataset[dict[str, Tensor]] = SplitView(train_full, tr)
            test: Dataset[dict[str, Tensor]] = SplitView(train_full, te)
            msg = f'test = {len(te)} train tiles held out (ratio {self.holdout_ratio}, seed {self.seed})'
            self.split_info.update({'split': 'on-disk + held-out test', 'test_split': 'holdout'})
        else:
            train, test = train_full, val
            msg = 'test = val (as in the paper)'
            self.split_info.update({'split': 'on-disk', 'test_split': 'val'})
            self._warn(
                'ReferenceTiles: only train/ and val/ exist; test == val (the paper selected and reported on val). '
                'Set holdout_ratio > 0 for a test split distinct from val.'
            )
        rank_zero_info(f'ReferenceTiles split: train={len(train)}, val={len(val)} tiles; {msg}')
        return {'train': train, 'val': val, 'test': test, 'predict': test}
