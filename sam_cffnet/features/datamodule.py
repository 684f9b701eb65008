"""Train and validate the head from cached encoder features: a datamodule wrapper.

:class:`CachedFeatureDataModule` wraps any landslide datamodule. Its batches are the wrapped datamodule's batches
(same tiles, same order, same normalization) plus ``features``: the frozen SAM encoder's feature levels, read from
the cache (float16, B x C x h x w each). ``SAMSegmenter`` then skips the ViT (``forward(image, features)``); only the
cheap band selection / resize of ``image`` for the decoder's shallow branch runs.

YAML (``python -m sam_cffnet fit --config ...``)::

    data:
      class_path: sam_cffnet.features.CachedFeatureDataModule
      init_args:
        cache_dir: feature_cache/bijie
        datamodule:
          class_path: sam_cffnet.datamodules.BijieDataModule
          init_args: {root: data/bijie, batch_size: 8}

At ``setup`` the cache of each split is looked up by its key, computed from the encoder (encoder weights
fingerprint, input size, normalization, bands, taps, autocast) and the datamodule's configuration; a missing cache is
extracted with that encoder (``build: true``, on the trainer's device) or refused with the list of differing settings
(``build: false``). No augmentation: see :mod:`sam_cffnet.features.cache`.

The couplings are explicit: the encoder is the ``encoder`` argument or, in a Trainer, the one the trained
LightningModule declares as its ``frozen_encoder`` (:attr:`sam_cffnet.tasks.SegmentationTask.frozen_encoder`);
the wrapped datamodule is never modified: the cached datasets are served by a copy of it
(:attr:`CachedFeatureDataModule.serving`), so its own loaders, samplers and seeds are used unchanged.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..datamodules.base import STAGE_SPLITS
from ..errors import ConfigError
from .cache import (
    HEADER,
    CacheError,
    FeatureCache,
    cache_key,
    datamodule_cache_config,
    describe_stale,
    encoder_cache_config,
    find_cache,
    tile_hash,
)
from .extract import extract_split, split_datasets

__all__ = ['CachedFeatureDataModule', 'CachedTiles']


class CachedTiles(Dataset[dict[str, Tensor]]):
    """A split's tiles with their cached features (``sample['features']``: list of float16 C x h x w).

    Args:
        dataset: the raw split dataset (the one the cache was extracted from, same order).
        cache: its :class:`FeatureCache`.
        check_tiles: hash every served tile and compare with the hash stored at extraction (cheap; catches data
            that changed after extraction).
    """

    def __init__(self, dataset: Dataset[dict[str, Tensor]], cache: FeatureCache, check_tiles: bool = True) -> None:
        if len(dataset) != len(cache):  # type: ignore[arg-type]
            raise CacheError(f'{cache.path}: {len(cache)} cached tiles, the split has {len(dataset)}')  # type: ignore
        self.dataset = dataset
        self.cache = cache
        self.check_tiles = check_tiles

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sample = dict(self.dataset[index])
        if self.check_tiles and tile_hash(sample) != int(self.cache.hashes[index]):
            raise CacheError(
                f'{self.cache.path}: tile {index} differs from the tile its features were extracted from (the data '
                f'changed since extraction); extract again with overwrite'
            )
        sample['features'] = self.cache.features(index)
        return sample

    def plot(self, *args: Any, **kwargs: Any) -> Any:
        """Delegate to the wrapped dataset."""
        return self.dataset.plot(*args, **kwargs)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        # ``tile_source`` (where a tile comes from, for writers of predictions) when the wrapped dataset has one
        if name == 'tile_source' and hasattr(self.__dict__.get('dataset'), 'tile_source'):
            return self.dataset.tile_source  # type: ignore[attr-defined]
        raise AttributeError(name)


class CachedFeatureDataModule(LightningDataModule):
    """Serve a datamodule's batches with the frozen encoder's features read from a cache.

    Args:
        datamodule: the wrapped datamodule (e.g. ``BijieDataModule``); ``augment`` must be off.
        cache_dir: the cache root (one sub-folder per split and key).
        build: extract a missing cache with the trained model's encoder at setup (False: refuse).
        overwrite: rebuild the caches even when up to date.
        extract_batch_size: tiles per encoder call when extracting (default: the datamodule's batch size).
        extract_device: ``'auto'`` (the trainer's device, else CPU) or a device name.
        integrity: ``'size'`` (header and file sizes) or ``'full'`` (also checksums) when opening a cache.
        check_tiles: compare every served tile with the hash stored at extraction.
        encoder: the encoder to key (and build) the caches with; default: the ``frozen_encoder`` of the
            Trainer's LightningModule (:attr:`sam_cffnet.tasks.SegmentationTask.frozen_encoder`).
    """

    def __init__(
        self,
        datamodule: LightningDataModule,
        cache_dir: str = 'feature_cache',
        build: bool = True,
        overwrite: bool = False,
        extract_batch_size: int | None = None,
        extract_device: str = 'auto',
        integrity: Literal['size', 'full'] = 'size',
        check_tiles: bool = True,
        encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if getattr(datamodule, 'augment', False):
            raise ConfigError(
                'the feature cache supports no augmentation (flips/rotations of a tile do not map exactly onto its '
                'cached ViT features); set augment: false on the wrapped datamodule or train without the cache'
            )
        self.datamodule = datamodule
        self.cache_dir = cache_dir
        self.build = build
        self.overwrite = overwrite
        self.extract_batch_size = extract_batch_size
        self.extract_device = extract_device
        self.integrity = integrity
        self.check_tiles = check_tiles
        self.encoder = encoder
        self.caches: dict[str, FeatureCache] = {}
        #: a copy of ``datamodule`` whose split datasets are the cached ones (its loaders serve the batches)
        self.serving: LightningDataModule = copy.copy(datamodule)
        self._rebuilt: set[str] = set()

    # ------------------------------------------------------------------ what the task and CLI read
    @property
    def num_channels(self) -> int:
        """Channels of ``batch['image']`` (the wrapped datamodule's)."""
        return int(self.datamodule.num_channels)  # type: ignore[attr-defined]

    @property
    def tile_size(self) -> int:
        """Tile edge of the wrapped datamodule."""
        return int(self.datamodule.tile_size)  # type: ignore[attr-defined]

    def preprocessing_config(self) -> dict[str, Any]:
        """Deprecated since 0.2.0, removed in 0.3.0: use :attr:`preprocessing`.

        ``.preprocessing.to_dict()`` is this dict.

        Returns:
            The wrapped datamodule's input pipeline as a plain-JSON dict.
        """
        warnings.warn(
            'CachedFeatureDataModule.preprocessing_config() is deprecated since sam_cffnet 0.2.0 and will be removed '
            'in 0.3.0: use the `preprocessing` property (`.preprocessing.to_dict()` gives this dict)',
            FutureWarning,
            stacklevel=2,
        )
        return dict(self.preprocessing.to_dict())

    @property
    def preprocessing(self) -> Any:
        """The wrapped datamodule's input pipeline (what checkpoints record)."""
        return self.datamodule.preprocessing  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ set-up
    def prepare_data(self) -> None:
        """The wrapped datamodule's ``prepare_data``."""
        self.datamodule.prepare_data()

    def _encoder(self) -> nn.Module:
        """The ``encoder`` argument, else the ``frozen_encoder`` the Trainer's LightningModule declares."""
        if self.encoder is not None:
            return self.encoder
        module = getattr(self.trainer, 'lightning_module', None) if self.trainer is not None else None
        encoder = getattr(module, 'frozen_encoder', None)
        if encoder is None:
            raise ConfigError(
                'CachedFeatureDataModule needs the frozen SAM encoder the head is trained on: use it with a '
                'SAM-based model in a Trainer, or pass encoder='
            )
        return encoder

    def _device(self) -> torch.device | None:
        if self.extract_device != 'auto':
            return torch.device(self.extract_device)
        if self.trainer is not None:
            return self.trainer.strategy.root_device
        return None

    def setup(self, stage: str) -> None:
        """Set up the wrapped datamodule and attach (building if allowed) the caches of the stage's splits."""
        encoder = self._encoder()
        splits = STAGE_SPLITS.get(stage, ())
        raw = split_datasets(self.datamodule, splits)
        enc_config = encoder_cache_config(encoder)
        data_config = datamodule_cache_config(self.datamodule)
        for split, dataset in raw.items():
            key = cache_key(enc_config, data_config, split, len(dataset))  # type: ignore[arg-type]
            path = find_cache(self.cache_dir, key, self.integrity)
            rebuild = self.overwrite and split not in self._rebuilt
            if rebuild or not (path / HEADER).exists():
                if not self.build:
                    stale = describe_stale(self.cache_dir, key)
                    raise CacheError(f'no feature cache for this model and data: {stale}; run '
                                     '`python -m sam_cffnet extract-features` or set build: true')  # fmt: skip
                extract_split(encoder, self.datamodule, split, self.cache_dir, self.extract_batch_size,
                              device=self._device(), overwrite=True, dataset=dataset)  # fmt: skip
                self._rebuilt.add(split)
            self.caches[split] = FeatureCache(path, self.integrity)
            setattr(self.serving, f'{split}_dataset', CachedTiles(dataset, self.caches[split], self.check_tiles))

    # ------------------------------------------------------------------ loaders and batches
    def train_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        """The wrapped datamodule's training loader over the cached tiles."""
        return self.serving.train_dataloader()

    def val_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        """The wrapped datamodule's validation loader over the cached tiles."""
        return self.serving.val_dataloader()

    def test_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        """The wrapped datamodule's test loader over the cached tiles."""
        return self.serving.test_dataloader()

    def predict_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        """The wrapped datamodule's prediction loader over the cached tiles."""
        return self.serving.predict_dataloader()

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """The wrapped datamodule's normalization (features pass through untouched)."""
        features = batch.pop('features', None)
        batch = self.datamodule.on_after_batch_transfer(batch, dataloader_idx)
        if features is not None:
            batch['features'] = features
        return batch
