"""LightningDataModule for the SAM-CFFNet authors' preprocessed H5 tiles (``<root>/{train,val}/*.h5``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import Dataset

from ..datasets.reference_tiles import ReferenceTiles
from .base import IMAGENET_RGB_STATS, LandslideDataModule, Normalization, _Tiles, split_indices


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

    def __init__(
        self,
        root: str = 'data',
        tile_size: int = 256,
        holdout_ratio: float = 0.0,
        batch_size: int = 8,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        seed: int = 0,
        augment: bool = False,
        normalization: Normalization = 'reference',
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        verify: bool = True,
    ) -> None:
        """Configure the datamodule (files are indexed and checked in ``setup``).

        Args:
            root: Folder holding ``train/`` and ``val/``.
            tile_size: Tile edge delivered in batches (reference 256).
            holdout_ratio: Fraction of train tiles held out as a distinct test split (0: test == val, as the paper).
            batch_size: Samples per batch (reference 8).
            num_workers: DataLoader workers.
            pin_memory: DataLoader ``pin_memory``.
            persistent_workers: Keep workers between epochs.
            seed: Split and shuffle seed.
            augment: Flips + 90-degree rotations on training batches (False = reference recipe).
            normalization: ``'reference'`` (/255), ``'dataset'`` or ``'none'``.
            mean: Override of the RGB means for ``'dataset'``.
            std: Override of the RGB stds.
            verify: Open every file at setup.
        """
        super().__init__(
            ReferenceTiles, root, tile_size, None, batch_size, num_workers, pin_memory, persistent_workers, seed,
            augment, normalization, 'none', mean, std, verify,
        )  # fmt: skip
        if not 0.0 <= holdout_ratio < 1.0:
            raise ValueError(f'holdout_ratio must be in [0, 1), got {holdout_ratio}')
        self.holdout_ratio = holdout_ratio
        self.save_hyperparameters()

    def _build_splits(self) -> dict[str, Dataset[dict[str, Tensor]] | None]:
        train_full = ReferenceTiles(self.root, 'train', verify=self.verify)
        val = ReferenceTiles(self.root, 'val', verify=self.verify)
        if self.holdout_ratio > 0:
            tr, te = split_indices(len(train_full), [1 - self.holdout_ratio, self.holdout_ratio], self.seed)
            train: Dataset[dict[str, Tensor]] = _Tiles(train_full, tr)
            test: Dataset[dict[str, Tensor]] = _Tiles(train_full, te)
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
