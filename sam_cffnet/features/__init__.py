"""Frozen-feature cache: compute the SAM encoder's feature levels once, train the head from disk.

* :mod:`.cache`: the on-disk format (float16 memmaps + header written last), keys, staleness checks;
* :mod:`.extract`: extraction of a datamodule split or an image folder (``python -m sam_cffnet extract-features``);
* :mod:`.datamodule`: :class:`CachedFeatureDataModule`, serving batches with ``features`` to the task.
"""

from .cache import CacheError, FeatureCache, FeatureCacheWriter, cache_key, tile_hash
from .datamodule import CachedFeatureDataModule, CachedTiles
from .extract import extract_folder, extract_split

__all__ = [
    'CacheError',
    'CachedFeatureDataModule',
    'CachedTiles',
    'FeatureCache',
    'FeatureCacheWriter',
    'cache_key',
    'extract_folder',
    'extract_split',
    'tile_hash',
]
