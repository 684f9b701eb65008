"""Shared machinery of the landslide datamodules: splits, loaders, normalization, DEM handling, augmentation.

Data flow of a batch (``on_after_batch_transfer``, on the device):

1. resize to ``tile_size`` when the loader delivers another size (L4S 128 px patches; bilinear / nearest);
2. ``image``: ``x = (clip(x * scale, lo, hi) - mean) / std`` per band, with the constants of
   ``normalization`` (see :meth:`LandslideDataModule.preprocessing_config`);
3. ``dem`` (when the dataset has one and ``dem_mode != 'none'``): per-tile, per-channel z-score (units of the
   DEM/slope files are unknown or differ between datasets), then appended to ``image`` (``'band'``) or kept
   under ``batch['dem']`` (``'separate'``);
4. when training and ``augment=True``: random horizontal flip, vertical flip and 90-degree rotation per sample,
   identical for ``image``, ``mask`` and ``dem``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchgeo.datamodules import NonGeoDataModule

from ..datasets.utils import resize_sample

Normalization = Literal['reference', 'dataset', 'none']
DemMode = Literal['none', 'band', 'separate']

IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)
#: ImageNet RGB statistics (0-255 scale) as a band table: the stated stand-in where a dataset publishes none.
IMAGENET_RGB_STATS: dict[str, tuple[float, float]] = {
    band: (IMAGENET_MEAN_255[i], IMAGENET_STD_255[i]) for i, band in enumerate(('red', 'green', 'blue'))
}

__all__ = ['LandslideDataModule', 'augment_batch', 'split_indices']


def split_indices(n: int, ratios: Sequence[float], seed: int, groups: Sequence[Any] | None = None) -> list[list[int]]:
    """Seeded random split of ``range(n)`` into parts with the given ratios (stratified by ``groups``).

    Args:
        n: Number of items.
        ratios: Non-negative ratios, one per part (normalized to sum 1).
        seed: Seed of the numpy generator (same seed -> same split).
        groups: Optional label per item; each group is split with the same ratios (stratified split).

    Returns:
        One sorted index list per part; parts are disjoint and cover ``range(n)``.
    """
    r = np.asarray(ratios, dtype=float)
    if (r < 0).any() or r.sum() <= 0:
        raise ValueError(f'split ratios must be >= 0 with a positive sum, got {list(ratios)}')
    r = r / r.sum()
    rng = np.random.default_rng(seed)
    labels = list(groups) if groups is not None else [0] * n
    parts: list[list[int]] = [[] for _ in r]
    for g in sorted(set(labels), key=str):
        idx = np.array([i for i in range(n) if labels[i] == g])
        idx = idx[rng.permutation(len(idx))]
        bounds = np.round(np.cumsum(r) * len(idx)).astype(int)
        start = 0
        for k, end in enumerate(bounds):
            parts[k].extend(idx[start:end].tolist())
            start = end
    return [sorted(p) for p in parts]


def augment_batch(batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Random h/v flips and 90-degree rotations, drawn per sample and applied identically to every key.

    Args:
        batch: ``image`` ``(B, C, T, T)``, optional ``mask`` ``(B, T, T)`` and ``dem`` ``(B, K, T, T)``.
        generator: Optional CPU generator for the random draws.

    Returns:
        The augmented batch (new tensors).
    """
    keys = [k for k in ('image', 'mask', 'dem') if k in batch]
    n = batch['image'].shape[0]
    draws = torch.randint(0, 2, (n, 2), generator=generator)
    rots = torch.randint(0, 4, (n,), generator=generator)
    out = dict(batch)
    for k in keys:
        items = []
        for i in range(n):
            x = batch[k][i]
            if draws[i, 0]:
                x = x.flip(-1)
            if draws[i, 1]:
                x = x.flip(-2)
            if rots[i]:
                x = torch.rot90(x, int(rots[i]), dims=(-2, -1))
            items.append(x)
        out[k] = torch.stack(items)
    return out


class _Tiles(Dataset[dict[str, Tensor]]):
    """A view of ``dataset`` restricted to ``indices`` (like ``Subset``) that keeps ``plot`` available."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.dataset[self.indices[index]]

    def plot(self, *args: Any, **kwargs: Any) -> Any:
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
    """Base datamodule: seeded splits, loaders, device-side normalization / DEM handling / augmentation.

    Subclasses set the normalization table (class attributes, one per dataset) and implement
    :meth:`_build_splits`, which returns the train/val/test/predict datasets.

    The normalization table: ``band_stats`` maps every band name of the dataset to ``(mean, std)`` in raw file
    units ('dataset' mode), ``stats_source`` states where they come from; ``reference_scale`` and
    ``reference_clip`` define the 'reference' mode (SAM-CFFNet recipe: ``x * scale`` clipped to [0, 1], no
    mean/std).
    """

    dataset_name: ClassVar[str] = ''
    band_stats: ClassVar[dict[str, tuple[float, float]]] = {}
    stats_source: ClassVar[str] = ''
    reference_scale: ClassVar[float] = 1 / 255
    reference_clip: ClassVar[tuple[float, float] | None] = (0.0, 1.0)
    reference_note: ClassVar[str] = 'uint8 values / 255 -> [0, 1], no mean/std (SAM-CFFNet feeds [0, 1] into SAM)'
    dem_bands: ClassVar[tuple[str, ...]] = ()

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
        augment: bool = False,
        normalization: Normalization = 'reference',
        dem_mode: DemMode = 'none',
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        verify: bool = True,
    ) -> None:
        """Store the configuration (no file access here; datasets are built and checked in :meth:`setup`).

        Args:
            dataset_class: The dataset class.
            root: Dataset root as downloaded.
            tile_size: Edge of the square tiles delivered in batches.
            stride: Step between tiles where a dataset is tiled (default ``tile_size``).
            batch_size: Samples per batch.
            num_workers: DataLoader worker processes.
            pin_memory: DataLoader ``pin_memory``.
            persistent_workers: Keep workers alive between epochs (only with ``num_workers > 0``).
            seed: Seed of the splits and of the train loader's shuffling order.
            augment: Random flips + 90-degree rotations on the training batches (False = reference recipe).
            normalization: ``'reference'``, ``'dataset'`` (per-band mean/std of the table) or ``'none'``.
            dem_mode: ``'none'``, ``'band'`` (append to image channels) or ``'separate'`` (``batch['dem']``).
            mean: Override of the per-band means (raw units, selected bands) for ``normalization='dataset'``.
            std: Override of the per-band stds, same convention.
            verify: Check every file at setup (truncation, shapes, band counts).
        """
        super().__init__(dataset_class, batch_size, num_workers)
        if normalization not in ('reference', 'dataset', 'none'):
            raise ValueError(f"normalization must be 'reference', 'dataset' or 'none', got {normalization!r}")
        if dem_mode not in ('none', 'band', 'separate'):
            raise ValueError(f"dem_mode must be 'none', 'band' or 'separate', got {dem_mode!r}")
        if dem_mode != 'none' and not self.dem_bands:
            raise ValueError(f'{self.dataset_name} has no DEM: dem_mode must be "none"')
        if tile_size <= 0 or (stride is not None and stride <= 0):
            raise ValueError(f'tile_size ({tile_size}) and stride ({stride}) must be positive')
        self.root = root
        self.tile_size = int(tile_size)
        self.stride = int(stride or tile_size)
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.seed = seed
        self.augment = augment
        self.normalization = normalization
        self.dem_mode = dem_mode
        self.mean_override = list(mean) if mean is not None else None
        self.std_override = list(std) if std is not None else None
        self.verify = verify
        self._splits: dict[str, Dataset[dict[str, Tensor]] | None] | None = None
        self._missing_error: Exception | None = None
        self.split_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ bands and normalization
    @property
    def bands(self) -> list[str]:
        """Names of the bands in ``batch['image']`` before any DEM channels."""
        return list(self.band_stats)

    @property
    def num_channels(self) -> int:
        """Channels of ``batch['image']`` (selected bands, plus DEM channels with ``dem_mode='band'``)."""
        return len(self.bands) + (len(self.dem_bands) if self.dem_mode == 'band' else 0)

    def _norm_constants(self) -> dict[str, Any]:
        n = len(self.bands)
        if self.normalization == 'none':
            return {'scale': [1.0] * n, 'clip': None, 'mean': [0.0] * n, 'std': [1.0] * n}
        if self.normalization == 'reference':
            return {'scale': [float(self.reference_scale)] * n, 'clip': self.reference_clip,
                    'mean': [0.0] * n, 'std': [1.0] * n}  # fmt: skip
        mean = self.mean_override or [self.band_stats[b][0] for b in self.bands]
        std = self.std_override or [self.band_stats[b][1] for b in self.bands]
        if len(mean) != n or len(std) != n:
            raise ValueError(f'mean/std overrides need {n} values (bands {self.bands}), got {len(mean)}/{len(std)}')
        return {'scale': [1.0] * n, 'clip': None, 'mean': [float(m) for m in mean], 'std': [float(s) for s in std]}

    def normalize_image(self, image: Tensor) -> Tensor:
        """Normalize spectral channels: ``(clip(x * scale, lo, hi) - mean) / std``.

        Args:
            image: ``(B, C, H, W)`` raw values of :attr:`bands`.

        Returns:
            ``(B, C, H, W)`` float32.
        """
        c = self._norm_constants()

        def vec(v: list[float]) -> Tensor:
            return torch.tensor(v, dtype=torch.float32, device=image.device).view(1, -1, 1, 1)

        x = image.float() * vec(c['scale'])
        if c['clip'] is not None:
            x = x.clamp(*c['clip'])
        return (x - vec(c['mean'])) / vec(c['std'])

    def normalize_dem(self, dem: Tensor) -> Tensor:
        """Per-tile, per-channel z-score of the DEM/slope stack (identity when ``normalization='none'``).

        Args:
            dem: ``(B, K, H, W)`` raw DEM/slope values.

        Returns:
            ``(B, K, H, W)`` float32.
        """
        dem = dem.float()
        if self.normalization == 'none':
            return dem
        mu = dem.mean(dim=(-2, -1), keepdim=True)
        sd = dem.std(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
        return (dem - mu) / sd

    def preprocessing_config(self) -> dict[str, Any]:
        """Plain-JSON description of the input pipeline, enough to reproduce it at inference on a new raster.

        Returns:
            Dict with ``dataset``, ``bands`` (names), ``band_indices`` (0-based in the dataset's band list),
            ``normalization``, ``scale``/``clip``/``mean``/``std`` (per band, formula in ``formula``),
            ``dem_mode``/``dem_bands``/``dem_normalization``, ``tile_size``, ``stride``, ``num_channels`` and the
            statistics' source.
        """
        c = self._norm_constants()
        return {
            'dataset': self.dataset_name,
            'datamodule': f'{type(self).__module__}.{type(self).__qualname__}',
            'bands': list(self.bands),
            'band_indices': self.band_indices,
            'num_channels': self.num_channels,
            'normalization': self.normalization,
            'formula': 'x = (clip(x * scale, clip[0], clip[1]) - mean) / std  (per band; no clip when clip is null)',
            'scale': c['scale'],
            'clip': list(c['clip']) if c['clip'] is not None else None,
            'mean': c['mean'],
            'std': c['std'],
            'stats_source': self.stats_source if self.normalization == 'dataset' else self.reference_note,
            'dem_mode': self.dem_mode,
            'dem_bands': list(self.dem_bands) if self.dem_mode != 'none' else [],
            'dem_normalization': 'none'
            if self.dem_mode == 'none' or self.normalization == 'none'
            else 'per_tile_zscore',
            'tile_size': self.tile_size,
            'stride': self.stride,
        }

    @property
    def band_indices(self) -> list[int]:
        """0-based indices of :attr:`bands` in the dataset's band list."""
        return list(range(len(self.bands)))

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
                f'predict={sizes["predict"]} (tile_size={self.tile_size}, stride={self.stride}, seed={self.seed})'
            )
        s = self._splits
        needed = {'fit': ('train', 'val'), 'validate': ('val',), 'test': ('test',), 'predict': ('predict',)}
        for key in needed.get(stage, ()):
            if s[key] is None and self._missing_error is not None:
                raise self._missing_error
        if stage == 'fit':
            self.train_dataset, self.val_dataset = s['train'], s['val']
        elif stage == 'validate':
            self.val_dataset = s['val']
        elif stage == 'test':
            self.test_dataset = s['test']
        elif stage == 'predict':
            self.predict_dataset = s['predict']

    def _dataloader_factory(self, split: str) -> DataLoader[dict[str, Tensor]]:
        dataset = self._valid_attribute(f'{split}_dataset', 'dataset')
        batch_size = self._valid_attribute(f'{split}_batch_size', 'batch_size')
        train = split == 'train'
        generator = torch.Generator().manual_seed(self.seed) if train else None
        sampler = None if train else _unrepeated_sampler(dataset)
        return DataLoader(
            dataset=dataset,
            batch_size=batch_size,
            shuffle=train,
            sampler=sampler,
            generator=generator,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            drop_last=train and len(dataset) >= batch_size,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict[str, Tensor]:
        """Resize to the tile size, normalize, place the DEM and augment (training only), on the device.

        Args:
            batch: ``image`` ``(B, C, h, w)`` raw values, optional ``mask`` ``(B, h, w)`` and ``dem``
                ``(B, K, h, w)``.
            dataloader_idx: Unused.

        Returns:
            ``image`` float32 ``(B, num_channels, T, T)``, ``mask`` int64 ``(B, T, T)`` in {0, 1} (if present),
            ``dem`` float32 ``(B, K, T, T)`` with ``dem_mode='separate'``.
        """
        batch = dict(batch)
        t = self.tile_size
        if tuple(batch['image'].shape[-2:]) != (t, t):
            batch = resize_sample(batch, t, t)
        batch['image'] = self.normalize_image(batch['image'])
        if 'dem' in batch:
            dem = self.normalize_dem(batch['dem'])
            if self.dem_mode == 'band':
                batch['image'] = torch.cat([batch['image'], dem], dim=1)
                del batch['dem']
            elif self.dem_mode == 'separate':
                batch['dem'] = dem
            else:
                del batch['dem']
        if 'mask' in batch:
            batch['mask'] = (batch['mask'] > 0).long()
        training = self.trainer is not None and self.trainer.training
        if self.augment and training:
            batch = augment_batch(batch)
        return batch

    def _warn(self, msg: str) -> None:
        rank_zero_warn(msg)
