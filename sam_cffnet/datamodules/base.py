"""Shared machinery of the landslide datamodules: splits, loaders, the input pipeline and augmentation.

Data flow of a batch (``on_after_batch_transfer``, on the device):

1. the datamodule's :class:`~sam_cffnet.preprocessing.Preprocessing` (resize to ``tile_size``, band
   normalization, DEM placement, mask binarization): the same object the checkpoint stores and ``map`` applies;
2. when training with ``augment=True``: random horizontal/vertical flips and 90-degree rotations (kornia), drawn
   per sample and identical for ``image``, ``mask`` and ``dem``, from a random stream seeded by
   ``(seed, epoch, batch, rank)`` so that a resumed run draws exactly what the uninterrupted one would have.

Subclasses set the dataset's band table (class attributes) and implement :meth:`LandslideDataModule._build_splits`;
they forward the shared arguments with ``**kwargs`` (the CLI still lists and checks each of them).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchgeo.datamodules import NonGeoDataModule

from ..datasets.splits import split_indices
from ..errors import ConfigError
from ..preprocessing import DemMode, Normalization, Preprocessing

IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)
#: ImageNet RGB statistics (0-255 scale) as a band table: the stated stand-in where a dataset publishes none.
IMAGENET_RGB_STATS: dict[str, tuple[float, float]] = {
    band: (IMAGENET_MEAN_255[i], IMAGENET_STD_255[i]) for i, band in enumerate(('red', 'green', 'blue'))
}

#: Lightning stage -> the splits it uses.
STAGE_SPLITS: dict[str, tuple[str, ...]] = {
    'fit': ('train', 'val'),
    'validate': ('val',),
    'test': ('test',),
    'predict': ('predict',),
}

__all__ = ['STAGE_SPLITS', 'EpochShuffleSampler', 'LandslideDataModule', 'SplitView', 'split_indices']


class EpochShuffleSampler(Sampler[int]):
    """A random order of ``range(n)`` that depends only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch, so epoch ``k`` has the same order in a resumed run as in an
    uninterrupted one (a ``RandomSampler`` with a generator would restart its sequence after a resume).
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch``."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


class SplitView(Dataset[dict[str, Tensor]]):
    """A view of ``dataset`` restricted to ``indices`` (like ``Subset``) that keeps ``plot`` available."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.dataset[self.indices[index]]

    def __getattr__(self, name: str) -> Any:
        # ``tile_source`` (where a tile comes from, for writers of predictions) when the dataset has one
        if name == 'tile_source' and hasattr(self.__dict__.get('dataset'), 'tile_source'):
            return lambda index: self.dataset.tile_source(self.indices[index])
        raise AttributeError(name)

    def plot(self, *args: Any, **kwargs: Any) -> Any:
        """Plot with the underlying dataset's ``plot`` (same arguments and result)."""
        return self.dataset.plot(*args, **kwargs)


def _unrepeated_sampler(dataset: Dataset[dict[str, Tensor]]) -> Any:
    """Under multi-process evaluation, a sampler that gives each tile to exactly one process.

    Lightning's default ``DistributedSampler`` pads a split to a multiple of the world size by repeating tiles, which
    biases metrics accumulated over the split. Returns ``None`` (the default loader) outside DDP, or when the split has
    fewer tiles than processes.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    if len(dataset) < dist.get_world_size():  # type: ignore[arg-type]
        return None
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    return UnrepeatedDistributedSampler(dataset, shuffle=False)


class LandslideDataModule(NonGeoDataModule):
    """Base datamodule: seeded splits, loaders, the input pipeline and augmentation on the device.

    Subclasses set the band table (class attributes, one per dataset) and implement :meth:`_build_splits`, which
    returns the train/val/test/predict datasets.

    The band table: ``band_stats`` maps every band name of the dataset to ``(mean, std)`` in raw file units
    ('dataset' normalization), ``stats_source`` states where they come from; ``reference_scale`` and
    ``reference_clip`` define the 'reference' normalization (SAM-CFFNet recipe: ``x * scale`` clipped to [0, 1], no
    mean/std).

    Args:
        dataset_class: The dataset class.
        root: Dataset root as downloaded.
        tile_size: Edge of the square tiles delivered in batches.
        stride: Step between tiles where a dataset is tiled (default ``tile_size``).
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes.
        pin_memory: DataLoader ``pin_memory``.
        persistent_workers: Keep workers alive between epochs (only with ``num_workers > 0``).
        seed: Seed of the splits, of the training order and of the augmentation.
        shuffle: Shuffle the training tiles every epoch (seeded by ``seed`` and the epoch); False keeps the split's
            order, as the SAM-CFFNet authors' loader (sorted files, ``shuffle=False``).
        drop_last_eval: Drop the last incomplete validation/test batch, as the authors' loader does
            (``drop_last=True``: up to ``batch_size - 1`` tiles are not scored). Default False: every tile counts.
        augment: Random flips + 90-degree rotations on the training batches (False = reference recipe).
        normalization: ``'reference'``, ``'dataset'`` (per-band mean/std of the table) or ``'none'``.
        dem_mode: ``'none'``, ``'band'`` (append to image channels) or ``'separate'`` (``batch['dem']``).
        mean: Override of the per-band means (raw units, selected bands) for ``normalization='dataset'``.
        std: Override of the per-band stds, same convention.
        verify: Check every file at setup (truncation, shapes, band counts, label values).
    """

    dataset_name: ClassVar[str] = ''
    band_stats: ClassVar[dict[str, tuple[float, float]]] = {}
    stats_source: ClassVar[str] = ''
    reference_scale: ClassVar[float] = 1 / 255
    reference_clip: ClassVar[tuple[float, float] | None] = (0.0, 1.0)
    reference_note: ClassVar[str] = 'uint8 values / 255 -> [0, 1], no mean/std (SAM-CFFNet feeds [0, 1] into SAM)'
    dem_bands: ClassVar[tuple[str, ...]] = ()
    #: the bands shown as red, green, blue in pictures (when selected)
    rgb_bands: ClassVar[tuple[str, str, str]] = ('red', 'green', 'blue')

    def __init__(
        self,
        dataset_class: type,
        root: str = 'data',
        tile_size: int = 256,
        stride: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        seed: int = 0,
        shuffle: bool = True,
        drop_last_eval: bool = False,
        augment: bool = False,
        normalization: Normalization = 'reference',
        dem_mode: DemMode = 'none',
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        verify: bool = True,
    ) -> None:
        super().__init__(dataset_class, batch_size, num_workers)
        if normalization not in ('reference', 'dataset', 'none'):
            raise ConfigError(f"normalization must be 'reference', 'dataset' or 'none', got {normalization!r}")
        if dem_mode not in ('none', 'band', 'separate'):
            raise ConfigError(f"dem_mode must be 'none', 'band' or 'separate', got {dem_mode!r}")
        if dem_mode != 'none' and not self.dem_bands:
            raise ConfigError(f'{self.dataset_name} has no DEM: dem_mode must be "none"')
        if tile_size <= 0 or (stride is not None and stride <= 0):
            raise ConfigError(f'tile_size ({tile_size}) and stride ({stride}) must be positive')
        self.root = root
        self.tile_size = int(tile_size)
        self.stride = int(stride or tile_size)
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last_eval = drop_last_eval
        self.augment = augment
        self.normalization = normalization
        self.dem_mode = dem_mode
        self.mean_override = list(mean) if mean is not None else None
        self.std_override = list(std) if std is not None else None
        self.verify = verify
        self._splits: dict[str, Dataset[dict[str, Tensor]] | None] | None = None
        self._missing_error: Exception | None = None
        self._augmenter: Any = None
        self._aug_counter = (-1, 0)
        self.split_info: dict[str, Any] = {}
        self.aug = None  # torchgeo's default normalization is replaced by ``preprocessing``

    # torchgeo's tasks plot ``datamodule.plot(K.Denormalize(datamodule.mean, datamodule.std)(batch))``: these map the
    # model inputs back to the raw units of the selected bands (torchgeo's 0 / 255 only fit the 'reference' scheme),
    # with one value per channel of ``batch['image']``: DEM channels appended by ``dem_mode='band'`` are per-tile
    # z-scores (no fixed raw unit), so they are left as they are (mean 0, std 1).
    def _denormalization(self) -> tuple[Tensor, Tensor]:
        """``(mean, std)``, each ``(num_channels,)``: ``x * std + mean`` per channel of ``batch['image']``."""
        preprocessing = self.preprocessing
        mean, std = preprocessing.denormalization()
        extra = preprocessing.num_channels - mean.numel()  # DEM channels inside the image
        if extra > 0:
            mean = torch.cat([mean, torch.zeros(extra, dtype=mean.dtype)])
            std = torch.cat([std, torch.ones(extra, dtype=std.dtype)])
        return mean, std

    @property  # type: ignore[override]
    def mean(self) -> Tensor:
        """Per-channel mean of ``x * std + mean`` = raw values (for torchgeo's ``Denormalize``), ``(num_channels,)``."""
        if 'verify' not in self.__dict__:  # torchgeo's __init__ reads it before our settings exist
            return torch.tensor(0)
        return self._denormalization()[0]

    @property  # type: ignore[override]
    def std(self) -> Tensor:
        """Per-channel std of ``x * std + mean`` = raw values (for torchgeo's ``Denormalize``), ``(num_channels,)``."""
        if 'verify' not in self.__dict__:
            return torch.tensor(255)
        return self._denormalization()[1]

    # ------------------------------------------------------------------ the input pipeline
    @property
    def bands(self) -> list[str]:
        """Names of the bands in ``batch['image']`` before any DEM channels."""
        return list(self.band_stats)

    @property
    def band_indices(self) -> list[int]:
        """0-based indices of :attr:`bands` in the dataset's band list."""
        return list(range(len(self.bands)))

    def preprocessing_config(self) -> dict[str, Any]:
        """Deprecated since 0.2.0, removed in 0.3.0: use :attr:`preprocessing`.

        ``.preprocessing.to_dict()`` is this dict.

        Returns:
            The input pipeline as a plain-JSON dict (``bands``, ``scale``, ``clip``, ``mean``, ``std``, ...).
        """
        warnings.warn(
            f'{type(self).__name__}.preprocessing_config() is deprecated since sam_cffnet 0.2.0 and will be removed in '
            f'0.3.0: use the `preprocessing` property (a sam_cffnet.preprocessing.Preprocessing; '
            f'`.preprocessing.to_dict()` gives this dict)',
            FutureWarning,
            stacklevel=2,
        )
        return self.preprocessing.to_dict()

    @property
    def preprocessing(self) -> Preprocessing:
        """The input pipeline of this datamodule (stored in checkpoints, applied again by ``predict`` and ``map``)."""
        n = len(self.bands)
        if self.normalization == 'none':
            scale, clip, mean, std = [1.0] * n, None, [0.0] * n, [1.0] * n
            source = 'raw values'
        elif self.normalization == 'reference':
            scale, clip, mean, std = [float(self.reference_scale)] * n, self.reference_clip, [0.0] * n, [1.0] * n
            source = self.reference_note
        else:
            scale, clip = [1.0] * n, None
            mean = self.mean_override or [self.band_stats[b][0] for b in self.bands]
            std = self.std_override or [self.band_stats[b][1] for b in self.bands]
            source = self.stats_source if self.mean_override is None else 'given in the config'
            if len(mean) != n or len(std) != n:
                raise ConfigError(
                    f'mean/std overrides need {n} values (bands {self.bands}), got {len(mean)}/{len(std)}'
                )
        return Preprocessing(
            bands=tuple(self.bands), band_indices=tuple(self.band_indices), all_bands=tuple(self.band_stats),
            scale=tuple(scale), clip=clip, mean=tuple(mean), std=tuple(std), normalization=self.normalization,
            stats_source=source, dem_mode=self.dem_mode, dem_bands=self.dem_bands,
            dem_normalization='none' if 'none' in (self.normalization, self.dem_mode) else 'per_tile_zscore',
            tile_size=self.tile_size, stride=self.stride, dataset=self.dataset_name,
            rgb_indices=tuple(self.bands.index(b) for b in self.rgb_bands) if set(self.rgb_bands) <= set(self.bands)
            else None,
        )  # fmt: skip

    @property
    def num_channels(self) -> int:
        """Channels of ``batch['image']`` (selected bands, plus DEM channels with ``dem_mode='band'``)."""
        return self.preprocessing.num_channels

    # ------------------------------------------------------------------ setup and loaders
    def _build_splits(self) -> dict[str, Dataset[dict[str, Tensor]] | None]:
        """Build the datasets (subclasses). Returns keys train, val, test, predict."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        """Build (once) and check the datasets, then expose those of ``stage``.

        Args:
            stage: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.
        """
        if self._splits is None:
            self._splits = self._build_splits()
            sizes = {k: (len(v) if v is not None else 0) for k, v in self._splits.items()}
            self.split_info['sizes'] = sizes
            rank_zero_info(
                f'{self.dataset_name} tiles: train={sizes["train"]}, val={sizes["val"]}, test={sizes["test"]}, '
                f'predict={sizes["predict"]} (tile_size={self.tile_size}, stride={self.stride}, seed={self.seed}); '
                f'input: {self.preprocessing.describe()}'
            )
        for split in STAGE_SPLITS.get(stage, ()):
            if self._splits[split] is None and self._missing_error is not None:
                raise self._missing_error
            setattr(self, f'{split}_dataset', self._splits[split])

    def _dataloader_factory(self, split: str) -> DataLoader[dict[str, Tensor]]:
        dataset = self._valid_attribute(f'{split}_dataset', 'dataset')
        batch_size = self._valid_attribute(f'{split}_batch_size', 'batch_size')
        train = split == 'train'
        generator = None
        if train:
            sampler = EpochShuffleSampler(len(dataset), self.seed) if self.shuffle else None
            drop_last = len(dataset) >= batch_size
            # the loader draws its workers' base seed from this generator, not from the global random state, so a
            # resumed run's random streams continue exactly (see SegmentationTask.on_train_batch_start)
            generator = torch.Generator().manual_seed(self.seed)
        else:
            sampler = _unrepeated_sampler(dataset)
            drop_last = self.drop_last_eval and split in ('val', 'test') and len(dataset) >= batch_size
        return DataLoader(
            dataset=dataset,
            batch_size=batch_size,
            sampler=sampler,
            generator=generator,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            drop_last=drop_last,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict[str, Tensor]:
        """The input pipeline, then (training only) augmentation, on the device.

        Args:
            batch: ``image`` ``(B, C, h, w)`` raw values, optional ``mask`` ``(B, h, w)`` and ``dem``
                ``(B, K, h, w)``.
            dataloader_idx: Unused.

        Returns:
            ``image`` float32 ``(B, num_channels, T, T)``, ``mask`` int64 ``(B, T, T)`` in {0, 1} (if present),
            ``dem`` float32 ``(B, K, T, T)`` with ``dem_mode='separate'``.
        """
        batch = self.preprocessing(batch)
        if self.augment and self.trainer is not None and self.trainer.training:
            batch = self.augment_batch(batch)
        return batch

    def augment_batch(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Random h/v flips and 90-degree rotations per sample, the same for ``image``, ``mask`` and ``dem``.

        The draws come from a generator seeded by ``(seed, epoch, batch number in the epoch, rank)``, never from
        the global random state, so they are the same in a resumed run and independent of the model's randomness.
        """
        import kornia.augmentation as K

        if self._augmenter is None:
            self._augmenter = K.AugmentationSequential(
                K.RandomHorizontalFlip(), K.RandomVerticalFlip(), K.RandomRotation90(times=(0, 3), p=1.0),
                data_keys=None, keepdim=True,
            )  # fmt: skip
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        rank = self.trainer.global_rank if self.trainer is not None else 0
        count = self._aug_counter[1] + 1 if self._aug_counter[0] == epoch else 0
        self._aug_counter = (epoch, count)
        seed = int(np.random.SeedSequence([self.seed, epoch, count, rank]).generate_state(1)[0])
        image = batch['image']
        stacked = torch.cat([image, batch['dem']], dim=1) if 'dem' in batch else image
        data: dict[str, Tensor] = {'image': stacked}
        if 'mask' in batch:
            data['mask'] = batch['mask'][:, None].float()
        devices = [stacked.device] if stacked.device.type == 'cuda' else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = self._augmenter(data)
        result = dict(batch)
        result['image'] = out['image'][:, : image.shape[1]]
        if 'dem' in batch:
            result['dem'] = out['image'][:, image.shape[1] :]
        if 'mask' in batch:
            result['mask'] = out['mask'][:, 0].round().long()
        return result

    def _warn(self, msg: str) -> None:
        rank_zero_warn(msg)
