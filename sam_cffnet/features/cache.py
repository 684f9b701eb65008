"""The frozen-feature cache: the SAM encoder's feature levels of every tile, computed once, stored on disk.

The SAM encoder is frozen and costs 10-90x more than the CFFD head; the reference recipe has no augmentation, so
every epoch would recompute the same features. A cache holds, for one split of one datamodule, the encoder's
``len(out_indices)`` feature levels of every tile in float16, one memory-mapped ``.npy`` file per level (memory stays
bounded: a tile is read when it is served).

Layout of one cache (a folder ``<root>/<split>-<key hash>/``)::

    level0.npy ... levelK.npy   float16, N x C x h x w (C-order, tile i at row i)
    tile_hashes.npy             uint64, N: a hash of each raw tile (image + DEM) the features were computed from
    header.json                 written LAST: the key, shapes, byte sizes and blake2b checksum of every file

Staleness is never silent:

* the folder name is a hash of the key: encoder fingerprint (the SAM weights), variant, input size, SAM
  normalization, band adapter and indices, tapped blocks, autocast/attention mode, the datamodule's input
  pipeline (:class:`~sam_cffnet.preprocessing.Preprocessing`) and split configuration, the split name, the tile
  count and the storage dtype; a cache made with anything else is not found (and :func:`find_cache` names the
  fields that differ);
* every served tile is hashed and compared to the hash stored at extraction (catches changed files);
* a missing header (interrupted extraction) or a file whose size differs from the header (truncation) is an error;
  ``integrity='full'`` also checks the checksums.

Augmentation: none is supported on cached features. Flips and 90-degree rotations of a tile do not flip/rotate
the features of a ViT with absolute position embeddings and relative position biases (the result is not
equivariant), so applying them to cached features would be wrong; caching the 8 dihedral variants would cost 8x disk
and 8x extraction. Train with ``augment: false`` (the reference recipe) or without the cache.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, OutputExistsError, SAMCFFNetError

__all__ = [
    'CACHE_FORMAT',
    'CacheError',
    'DiskSpaceError',
    'FeatureCache',
    'FeatureCacheWriter',
    'cache_key',
    'check_disk_space',
    'encoder_cache_config',
    'find_cache',
    'key_hash',
    'tile_hash',
]

#: Version of the on-disk format (part of the key).
CACHE_FORMAT = 2
HEADER = 'header.json'
HASHES = 'tile_hashes.npy'
STORAGE_DTYPE = np.float16
_HASH_CHUNK = 1 << 24


class CacheError(SAMCFFNetError, RuntimeError):
    """A feature cache is missing, incomplete, truncated, corrupted or was made for other settings."""


class DiskSpaceError(SAMCFFNetError, OSError):
    """The file system chosen for a feature cache has too little free space (checked before any work)."""


# ---------------------------------------------------------------------------------------------- keys
def encoder_cache_config(encoder: nn.Module) -> dict[str, Any]:
    """Everything about a :class:`~sam_cffnet.models.encoders.sam.SAMEncoder` that changes its features.

    Raises:
        ConfigError: the encoder has trainable parts (band projection, injector): its features change during
            training and cannot be cached.
    """
    if getattr(encoder, 'has_trainable_parameters', False):
        raise ConfigError(
            'the encoder has trainable parameters (band_adapter=project or a block injector such as TransLandSeg); '
            'its features change during training and cannot be cached: train without the feature cache, or use '
            "band_adapter='select'"
        )
    adapter = encoder.band_adapter
    speed = getattr(encoder, 'speed_options', None)
    # every option of the encoder (a new switch is part of the key without an edit here), the weights by fingerprint
    # rather than by file name, then the values in effect now (speed switches can be changed after construction)
    options = {k: v for k, v in getattr(encoder, 'options', {}).items() if k != 'sam_checkpoint'}
    return {
        **options,
        'variant': encoder.variant,
        'fingerprint': encoder.fingerprint(),
        'input_size': encoder.input_size,
        'sam_normalize': bool(encoder.sam_normalize),
        'in_channels': int(encoder.in_channels),
        'band_adapter': adapter.mode,
        'band_indices': list(adapter.band_indices) if adapter.band_indices is not None else None,
        'out_indices': list(encoder.out_indices),
        'autocast': speed.autocast if speed is not None else 'none',
        'attention': speed.attention if speed is not None else 'reference',
        'channels_last': bool(speed.channels_last) if speed is not None else False,
    }


#: Datamodule settings that do not change which tiles a split holds, their order in the split or their pixels
#: (loading, training order, evaluation batching, file checks, where a datamodule keeps its own helper files).
_LOADER_ONLY = {
    'root', 'batch_size', 'num_workers', 'pin_memory', 'persistent_workers', 'verify', 'augment', 'shuffle',
    'drop_last_eval', 'cache_dir', 'progress',
}  # fmt: skip


def _constructor_settings(cls: type) -> dict[str, Any]:
    """Every setting of ``cls``'s constructor with its default, following ``**kwargs`` up to the base that takes none.

    E.g. ``DemoBijieDataModule`` -> ``BijieDataModule`` -> ``LandslideDataModule``.
    """
    settings: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        parameters = list(inspect.signature(init).parameters.values())[1:]
        for parameter in parameters:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or parameter.name in settings:
                continue
            if parameter.name != 'dataset_class':
                settings[parameter.name] = None if parameter.default is parameter.empty else parameter.default
        if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
            break
    return settings


def _own_hparams(datamodule: Any) -> dict[str, Any]:
    """The settings the datamodule was built with.

    Under LightningCLI, a datamodule built inside another (``CachedFeatureDataModule``'s ``datamodule``) is given
    the outer one's settings as ``hparams``; its own are then the nested ``init_args`` naming its class.
    """
    hparams = dict(getattr(datamodule, 'hparams', {}) or {})
    own = f'{type(datamodule).__module__}.{type(datamodule).__qualname__}'
    given = hparams.get('_class_path')
    if given is None or given == own or given.rpartition('.')[2] == type(datamodule).__name__:
        return hparams
    for value in hparams.values():
        if isinstance(value, dict) and str(value.get('class_path', '')).rpartition('.')[2] == type(datamodule).__name__:
            return dict(value.get('init_args') or {})
    return {}


def datamodule_cache_config(datamodule: Any) -> dict[str, Any]:
    """The datamodule's part of the key: what changes the features of a split's tiles, and nothing else.

    That is its class, its input pipeline (``preprocessing``) and the settings of its constructor that choose the
    tiles (split ratios, seed, tile size, chip mode, ...), each with its default when not given, so that the same
    datamodule built from a config, from a ``CachedFeatureDataModule``'s ``datamodule`` block or in Python has
    one key. Settings of a wrapper (``cache_dir``, ``build``, ...) and of loading (:data:`_LOADER_ONLY`) are not
    part of it.
    """
    pipeline = getattr(datamodule, 'preprocessing', None)
    pre = pipeline.to_dict() if pipeline is not None else {}
    settings = _constructor_settings(type(datamodule))
    given = _own_hparams(datamodule)
    split = {k: given.get(k, default) for k, default in sorted(settings.items()) if k not in _LOADER_ONLY}
    return _jsonable({'class': f'{type(datamodule).__module__}.{type(datamodule).__qualname__}',
                      'preprocessing': pre, 'split_config': split})  # fmt: skip


def cache_key(
    encoder_config: dict[str, Any], data_config: dict[str, Any], split: str, num_tiles: int
) -> dict[str, Any]:
    """The full key of one cache (plain JSON)."""
    return {
        'format': CACHE_FORMAT,
        'dtype': np.dtype(STORAGE_DTYPE).name,
        'encoder': encoder_config,
        'data': data_config,
        'split': split,
        'num_tiles': int(num_tiles),
    }


def key_hash(key: dict[str, Any]) -> str:
    """16 hex digits identifying a key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _diff(a: Any, b: Any, prefix: str = '') -> list[str]:
    """Dotted names of the fields that differ between two keys."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k), b.get(k), f'{prefix}{k}.')
        return out
    return [] if a == b else [f'{prefix[:-1]} ({a!r} -> {b!r})' if len(repr(a)) < 80 else prefix[:-1]]


def tile_hash(sample: dict[str, Tensor]) -> int:
    """A 63-bit hash of a raw sample's pixels (``image`` and ``dem``), identifying the tile the features belong to."""
    h = hashlib.blake2b(digest_size=8)
    for key in ('image', 'dem'):
        if key in sample:
            x = sample[key].detach().cpu().contiguous()
            h.update(f'{key}{tuple(x.shape)}{x.dtype}'.encode())
            h.update(x.numpy().tobytes())
    return int.from_bytes(h.digest(), 'little') >> 1


def required_bytes(num_tiles: int, level_shapes: Sequence[Sequence[int]]) -> int:
    """Disk bytes of a cache with ``num_tiles`` tiles and per-tile level shapes (C, h, w)."""
    per_tile = sum(math.prod(s) for s in level_shapes) * np.dtype(STORAGE_DTYPE).itemsize + 8
    return num_tiles * per_tile + 4096 * (len(level_shapes) + 2)


def check_disk_space(folder: str | os.PathLike[str], needed: int, margin: float = 1.05) -> int:
    """Refuse to start when ``folder``'s file system has less than ``needed * margin`` bytes free.

    Returns:
        The free bytes.

    Raises:
        DiskSpaceError: not enough space (the message gives both sizes; an ``OSError``).
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed * margin:
        raise DiskSpaceError(
            f'not enough disk space for the feature cache in {folder}: needs {format_bytes(needed)} '
            f'(+{round(100 * (margin - 1))} % margin), {format_bytes(free)} free; choose another --output/cache_dir, '
            f'a smaller encoder_input_size, or fewer tiles'
        )
    return free


def format_bytes(n: float) -> str:
    """``1.5 GiB``-style size."""
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(n) < 1024 or unit == 'TiB':
            return f'{n:.1f} {unit}' if unit != 'B' else f'{int(n)} B'
        n /= 1024
    raise AssertionError


# ---------------------------------------------------------------------------------------------- writer
class FeatureCacheWriter:
    """Writes a cache sequentially (tile 0, 1, ...); the header is written by :meth:`finish` only.

    Args:
        path: the cache folder (refused if it exists, unless ``overwrite``).
        key: the cache key (:func:`cache_key`).
        level_shapes: per-tile shape (C, h, w) of every feature level.
        overwrite: replace an existing folder.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        key: dict[str, Any],
        level_shapes: Sequence[Sequence[int]],
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise OutputExistsError(f'{self.path} exists; pass overwrite=True (--overwrite) to replace it')
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        self.key = key
        self.num_tiles = int(key['num_tiles'])
        self.level_shapes = [tuple(int(v) for v in s) for s in level_shapes]
        self.levels = [
            np.lib.format.open_memmap(self.path / f'level{i}.npy', 'w+', STORAGE_DTYPE, (self.num_tiles, *s))
            for i, s in enumerate(self.level_shapes)
        ]
        self.hashes = np.zeros(self.num_tiles, dtype=np.uint64)
        self.position = 0

    def write(self, features: Sequence[Tensor], hashes: Sequence[int]) -> None:
        """Append a batch.

        Args:
            features: one B x C x h x w tensor per level (any float dtype; stored as float16).
            hashes: :func:`tile_hash` of the B raw tiles.
        """
        n = len(hashes)
        if self.position + n > self.num_tiles:
            raise ValueError(f'{self.path}: more tiles written ({self.position + n}) than announced ({self.num_tiles})')
        for i, (f, level) in enumerate(zip(features, self.levels, strict=True)):
            if tuple(f.shape) != (n, *self.level_shapes[i]):
                raise ValueError(f'level {i}: got features {tuple(f.shape)}, expected {(n, *self.level_shapes[i])}')
            half = f.detach().to('cpu', torch.float16)
            if not torch.isfinite(half).all():
                raise ValueError(
                    f'level {i} features overflow float16 (|x| > 65504 or non-finite) for tiles '
                    f'{self.position}..{self.position + n - 1}; the cache stores float16'
                )
            level[self.position : self.position + n] = half.numpy()
        self.hashes[self.position : self.position + n] = np.asarray(hashes, dtype=np.uint64)
        self.position += n

    def finish(self, extra: dict[str, Any] | None = None) -> Path:
        """Flush, checksum and write the header (the completion marker). Returns the cache folder."""
        if self.position != self.num_tiles:
            raise ValueError(f'{self.path}: {self.position} tiles written, {self.num_tiles} announced')
        for level in self.levels:
            level.flush()
        del self.levels
        np.save(self.path / HASHES, self.hashes)
        files = {}
        for name in [f'level{i}.npy' for i in range(len(self.level_shapes))] + [HASHES]:
            f = self.path / name
            files[name] = {'bytes': f.stat().st_size, 'blake2b': _file_checksum(f)}
        header = {
            'key': self.key,
            'key_hash': key_hash(self.key),
            'num_tiles': self.num_tiles,
            'level_shapes': [list(s) for s in self.level_shapes],
            'files': files,
            'created': time.strftime('%Y-%m-%dT%H:%M:%S'),
            'complete': True,
            **(extra or {}),
        }
        tmp = self.path / (HEADER + '.partial')
        tmp.write_text(json.dumps(header, indent=1, sort_keys=True))
        os.replace(tmp, self.path / HEADER)
        return self.path


def _file_checksum(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, 'rb') as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- reader
class FeatureCache:
    """Read access to a finished cache (memory-mapped; safe to pickle into DataLoader workers).

    Args:
        path: the cache folder.
        integrity: ``'size'`` (default: header present and every file of the size it records, which catches
            truncation and interrupted extraction) or ``'full'`` (also the blake2b checksums; reads everything).

    Raises:
        CacheError: missing/incomplete header, truncated or corrupted file.
    """

    def __init__(self, path: str | os.PathLike[str], integrity: Literal['size', 'full'] = 'size') -> None:
        self.path = Path(path)
        header_file = self.path / HEADER
        if not header_file.is_file():
            raise CacheError(
                f'{self.path}: no {HEADER}: the feature extraction did not finish (interrupted?); extract again with '
                f'overwrite (--overwrite)'
            )
        try:
            self.header: dict[str, Any] = json.loads(header_file.read_text())
        except json.JSONDecodeError as err:
            raise CacheError(f'{header_file}: not valid JSON ({err}); extract again with overwrite') from err
        if not self.header.get('complete'):
            raise CacheError(f'{header_file}: the cache is marked incomplete; extract again with overwrite')
        for name, info in self.header['files'].items():
            f = self.path / name
            size = f.stat().st_size if f.is_file() else None
            if size != info['bytes']:
                raise CacheError(
                    f'{f}: {"missing" if size is None else f"{size} bytes"}, the header records {info["bytes"]} bytes '
                    f'(truncated or replaced file); extract again with overwrite'
                )
            if integrity == 'full' and _file_checksum(f) != info['blake2b']:
                raise CacheError(f'{f}: checksum mismatch (corrupted file); extract again with overwrite')
        self.key: dict[str, Any] = self.header['key']
        self.num_tiles = int(self.header['num_tiles'])
        self.level_shapes = [tuple(s) for s in self.header['level_shapes']]
        self._levels: list[np.ndarray] | None = None
        self._hashes: np.ndarray | None = None

    def __len__(self) -> int:
        return self.num_tiles

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state['_levels'] = state['_hashes'] = None  # re-opened lazily in each worker
        return state

    def _open(self) -> None:
        self._levels = [np.load(self.path / f'level{i}.npy', mmap_mode='r') for i in range(len(self.level_shapes))]
        self._hashes = np.load(self.path / HASHES)

    @property
    def hashes(self) -> np.ndarray:
        """uint64 tile hashes, N."""
        if self._hashes is None:
            self._open()
        assert self._hashes is not None
        return self._hashes

    def features(self, index: int) -> list[Tensor]:
        """The feature levels of tile ``index``: float16 tensors C x h x w."""
        if self._levels is None:
            self._open()
        assert self._levels is not None
        return [torch.from_numpy(np.array(level[index])) for level in self._levels]

    def __repr__(self) -> str:
        return f'FeatureCache({str(self.path)!r}, tiles={self.num_tiles}, levels={self.level_shapes})'


def find_cache(root: str | os.PathLike[str], key: dict[str, Any], integrity: Literal['size', 'full'] = 'size') -> Path:
    """The folder of the cache with exactly this key under ``root`` (which need not exist yet).

    Returns:
        ``root/<split>-<key hash>`` (check ``(path / 'header.json').exists()`` to see whether it is built).

    Raises:
        CacheError: the folder exists but holds another key (hash collision or tampering), or is broken.
    """
    path = Path(root) / f'{key["split"]}-{key_hash(key)}'
    if (path / HEADER).exists():
        cache = FeatureCache(path, integrity)
        if cache.key != _jsonable(key):
            raise CacheError(f'{path}: holds a cache for another key ({", ".join(_diff(cache.key, key)[:6])})')
    return path


def describe_stale(root: str | os.PathLike[str], key: dict[str, Any]) -> str:
    """A sentence naming what differs between ``key`` and the other caches of the same split under ``root``."""
    lines = []
    for header in sorted(Path(root).glob(f'{key["split"]}-*/{HEADER}')):
        try:
            other = json.loads(header.read_text())['key']
        except (OSError, ValueError, KeyError):
            continue
        lines.append(f'{header.parent.name}: {", ".join(_diff(other, _jsonable(key))[:6])}')
    if not lines:
        return f'no cache for split {key["split"]!r} under {root}'
    return f'caches for split {key["split"]!r} under {root} were made with other settings: ' + '; '.join(lines)
