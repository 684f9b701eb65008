"""Feature extraction: run the frozen SAM encoder once over a split (or an image folder) and write a feature cache.

Command line (``python -m sam_cffnet extract-features --help``): :func:`parse_args` parses it with jsonargparse;
:mod:`sam_cffnet.cli` wires it, building the model and datamodule of a config with the training CLI's own parser
(:func:`extract_config_splits`), or an encoder from the ``--encoder.*`` options, which are
:class:`~sam_cffnet.models.encoders.sam.SAMEncoder`'s own arguments and defaults (:func:`extract_images`)::

    # the cache a training run with this config uses (train and val splits of its datamodule)
    python -m sam_cffnet extract-features --config bijie.yaml --split train val --output feats/
    # SAM embeddings of a folder of images, for other models
    python -m sam_cffnet extract-features --images tiles/ --encoder.variant vit_l \
        --encoder.sam_checkpoint sam_vit_l_0b3195.pth --output feats/

The disk size is printed before starting and the run is refused when the file system has less free space.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, default_collate

from ..datamodules.base import STAGE_SPLITS
from ..errors import ConfigError, DataError, MissingFileError, OutputExistsError
from ..models.encoders.sam import SAMEncoder
from ..preprocessing import Preprocessing
from .cache import (
    HEADER,
    FeatureCacheWriter,
    cache_key,
    check_disk_space,
    datamodule_cache_config,
    encoder_cache_config,
    find_cache,
    format_bytes,
    required_bytes,
    tile_hash,
)

__all__ = [
    'SPLIT_NAMES',
    'ImageFolder',
    'build_parser',
    'extract_config_splits',
    'extract_dataset',
    'extract_folder',
    'extract_images',
    'extract_split',
    'parse_args',
    'split_datasets',
]

#: Split names, in the order of the datamodules' stage table (``STAGE_SPLITS``).
SPLIT_NAMES: tuple[str, ...] = tuple(dict.fromkeys(s for splits in STAGE_SPLITS.values() for s in splits))
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.tif', '.tiff')


def split_datasets(datamodule: Any, splits: Sequence[str]) -> dict[str, Dataset[dict[str, Tensor]]]:
    """The raw datasets of ``splits`` (``train``, ``val``, ``test``, ``predict``), after the datamodule's setup.

    Each split is set up through the first Lightning stage that uses it (``STAGE_SPLITS``: train and val through
    ``fit``) and read from the datamodule's ``<split>_dataset`` attribute.

    Args:
        datamodule: a landslide datamodule.
        splits: split names.

    Returns:
        ``{split: dataset}``.

    Raises:
        ConfigError: unknown split name, or a split the datamodule does not have.
    """
    out = {}
    for split in splits:
        stage = next((stage for stage, names in STAGE_SPLITS.items() if split in names), None)
        if stage is None:
            raise ConfigError(f'unknown split {split!r}; choose from {list(SPLIT_NAMES)}')
        datamodule.setup(stage)
        dataset = getattr(datamodule, f'{split}_dataset', None)
        if dataset is None:
            raise ConfigError(f'{type(datamodule).__name__} has no {split} split')
        out[split] = dataset
    return out


class _HashingCollate:
    """Collate that also returns the :func:`tile_hash` of every raw sample (picklable for workers)."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, samples: list[dict[str, Tensor]]) -> tuple[Any, list[int]]:
        return self.collate(samples), [tile_hash(s) for s in samples]


def extract_dataset(
    encoder: nn.Module,
    dataset: Dataset[dict[str, Tensor]],
    path: str | os.PathLike[str],
    key: dict[str, Any],
    tile_size: tuple[int, int],
    transform: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
    collate_fn: Callable[[list[Any]], Any] = default_collate,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    progress: bool = True,
    extra_header: dict[str, Any] | None = None,
) -> Path:
    """Run ``encoder`` over ``dataset`` in order and write the cache ``path`` (core of the other functions).

    Args:
        encoder: the frozen SAM encoder.
        dataset: samples with ``image`` (C x H x W) and optionally ``mask``/``dem``.
        path: the cache folder.
        key: the cache key (its ``num_tiles`` must equal ``len(dataset)``).
        tile_size: (H, W) of the images the encoder receives (after ``transform``).
        transform: applied to each batch on the device before the encoder (the datamodule's normalization).
        collate_fn: the loader's collate.
        batch_size: tiles per encoder call.
        num_workers: DataLoader workers.
        device: where the encoder runs (default: where it is). The encoder is moved back afterwards.
        overwrite: replace an existing (or unfinished) cache folder.
        progress: show a tqdm bar.
        extra_header: more entries for the header.

    Returns:
        The cache folder.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        DiskSpaceError: too little free space for the cache.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    if path.exists() and not overwrite:
        state = 'a finished' if (path / HEADER).exists() else 'an UNFINISHED (interrupted?)'
        raise OutputExistsError(f'{path} holds {state} feature cache; pass overwrite=True (--overwrite) to replace it')
    n = len(dataset)
    if n != key['num_tiles']:
        raise ValueError(f'the key announces {key["num_tiles"]} tiles, the dataset has {n}')
    grid = encoder.feature_grid(*tile_size)
    level_shapes = [(encoder.embed_dim, *grid)] * len(encoder.out_indices)
    needed = required_bytes(n, level_shapes)
    free = check_disk_space(path.parent, needed)
    print(
        f'feature cache {path}: {n} tiles x {len(level_shapes)} levels of {level_shapes[0]} float16 = '
        f'{format_bytes(needed)} on disk ({format_bytes(free)} free)'
    )
    home = next(encoder.parameters()).device
    device = torch.device(device) if device is not None else home
    was_training = encoder.training
    encoder.to(device).eval()
    writer = FeatureCacheWriter(path, key, level_shapes, overwrite=overwrite)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_HashingCollate(collate_fn))  # fmt: skip
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            for batch, hashes in tqdm(loader, desc=f'SAM features {key["split"]}', unit='batch', disable=not progress):
                batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
                if transform is not None:
                    batch = transform(batch)
                writer.write(encoder(batch['image']).features, hashes)
    finally:
        encoder.to(home).train(was_training)
    seconds = time.perf_counter() - start
    out = writer.finish({'extraction_seconds': round(seconds, 3), 'device': str(device), **(extra_header or {})})
    print(f'wrote {out} in {seconds:.1f} s ({n / max(seconds, 1e-9):.2f} tiles/s)')
    return out


def extract_split(
    encoder: nn.Module,
    datamodule: Any,
    split: str,
    root: str | os.PathLike[str],
    batch_size: int | None = None,
    num_workers: int | None = None,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    progress: bool = True,
    dataset: Dataset[dict[str, Tensor]] | None = None,
) -> Path:
    """Extract the cache of one split of a datamodule under ``root`` (a no-op when it is up to date).

    Args:
        encoder: the frozen SAM encoder (as configured for training: size, input size, normalization, bands).
        datamodule: a :class:`~sam_cffnet.datamodules.LandslideDataModule` (its normalization is applied as in
            training; no augmentation).
        split: ``'train'``, ``'val'``, ``'test'`` or ``'predict'``.
        root: the cache root; the cache is ``root/<split>-<key hash>``.
        batch_size: tiles per encoder call (default: the datamodule's).
        num_workers: loader workers (default: the datamodule's).
        device: where the encoder runs.
        overwrite: rebuild even when a finished cache with this key exists.
        progress: tqdm bar.
        dataset: the split's raw dataset when already set up (skips ``datamodule.setup``).

    Returns:
        The cache folder.

    Raises:
        OutputExistsError: an unfinished cache with this key exists and ``overwrite`` is False.
    """
    if dataset is None:
        dataset = split_datasets(datamodule, [split])[split]
    key = cache_key(encoder_cache_config(encoder), datamodule_cache_config(datamodule), split, len(dataset))
    path = find_cache(root, key)
    if (path / HEADER).exists() and not overwrite:
        print(f'feature cache {path} is up to date ({len(dataset)} tiles)')
        return path
    unfinished = path.exists() and not (path / HEADER).exists()
    if unfinished and not overwrite:
        raise OutputExistsError(
            f'{path} holds an UNFINISHED (interrupted?) feature cache; pass --overwrite to rebuild it'
        )
    tile = int(datamodule.tile_size)
    return extract_dataset(
        encoder, dataset, path, key, (tile, tile),
        transform=datamodule.preprocessing,
        collate_fn=getattr(datamodule, 'collate_fn', None) or default_collate,
        batch_size=batch_size or int(getattr(datamodule, 'batch_size', 8) or 8),
        num_workers=int(num_workers if num_workers is not None else getattr(datamodule, 'num_workers', 0)),
        device=device, overwrite=True, progress=progress,
    )  # fmt: skip


class ImageFolder(Dataset[dict[str, Tensor]]):
    """Images of a folder (PNG/JPEG/TIFF readable by Pillow), as raw C x H x W float32 values.

    The pixel scaling is the :class:`~sam_cffnet.preprocessing.Preprocessing` of :func:`extract_folder`.

    Args:
        folder: the folder (not recursive).

    Raises:
        MissingFileError: ``folder`` is not a folder or holds no image.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise MissingFileError(f'{self.folder}: not a folder of images')
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise MissingFileError(f'{self.folder}: no images ({", ".join(IMAGE_SUFFIXES)})')

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        from PIL import Image

        f = self.files[index]
        try:
            with Image.open(f) as im:
                arr = np.asarray(im)
        except OSError as err:
            raise DataError(f'{f}: cannot read the image ({err})') from err
        arr = arr[..., None] if arr.ndim == 2 else arr
        return {'image': torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1).contiguous()}


def extract_folder(
    encoder: nn.Module,
    folder: str | os.PathLike[str],
    root: str | os.PathLike[str],
    scale: float = 1 / 255,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """SAM features of every image of ``folder`` (sorted by name; the names are in the header's ``files``).

    The images must all have the same size (the encoder resizes them to ``input_size`` when it is set). Their pixels
    are scaled by a :class:`~sam_cffnet.preprocessing.Preprocessing` (``x * scale`` per band, no mean/std), the
    pipeline training applies.

    Args:
        encoder: the frozen SAM encoder.
        folder: the image folder.
        root: the cache root.
        scale: pixel factor (default 1/255: 8-bit images to [0, 1], the reference convention).
        batch_size: images per encoder call.
        device: where the encoder runs.
        overwrite: rebuild even when a finished cache with this key exists.
        progress: tqdm bar.

    Returns:
        The cache folder ``root/folder-<key hash>`` (read it with :class:`~sam_cffnet.features.FeatureCache`).

    Raises:
        MissingFileError: ``folder`` is not a folder of images.
        DataError: the images differ in size.
        OutputExistsError: an unfinished cache with this key exists and ``overwrite`` is False.
    """
    from PIL import Image

    dataset = ImageFolder(folder)
    sizes = {}
    for f in dataset.files:
        with Image.open(f) as im:
            sizes.setdefault(im.size[::-1], f)
    if len(sizes) > 1:
        found = ', '.join(f'{s} e.g. {f.name}' for s, f in sizes.items())
        raise DataError(f'{folder}: images of several sizes ({found}); use one size per folder')
    names = [f.name for f in dataset.files]
    data = {'folder': str(Path(folder).resolve()), 'files': names, 'scale': scale}
    key = cache_key(encoder_cache_config(encoder), data, 'folder', len(dataset))
    path = find_cache(root, key)
    if (path / HEADER).exists() and not overwrite:
        print(f'feature cache {path} is up to date ({len(dataset)} images)')
        return path
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f'{path} holds an UNFINISHED (interrupted?) feature cache; pass --overwrite to rebuild it'
        )
    size = next(iter(sizes))
    bands = int(dataset[0]['image'].shape[0])
    pipeline = Preprocessing(bands=tuple(f'band{i + 1}' for i in range(bands)), scale=(scale,) * bands,
                             mean=(0.0,) * bands, std=(1.0,) * bands, normalization='none',
                             stats_source=f'extract-features --images: x * {scale}', tile_size=max(size))  # fmt: skip

    def transform(batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {**batch, 'image': pipeline.normalize_image(batch['image'])}  # scaled, not resized

    return extract_dataset(encoder, dataset, path, key, size, transform=transform, batch_size=batch_size,
                           device=device, overwrite=True, progress=progress,
                           extra_header={'files_in_order': names})  # fmt: skip


# ---------------------------------------------------------------------------------------------- CLI
#: SAMEncoder arguments that are not ``--encoder.*`` options of ``--images``: set by models, or (``in_channels``)
#: from the images themselves
_NOT_IMAGE_OPTIONS = (*SAMEncoder.internal_arguments, 'in_channels')
#: options that only ``--images`` reads
_IMAGE_ONLY = ('--encoder', '--scale')


def build_parser() -> Any:
    """The jsonargparse parser of ``extract-features`` (its ``--encoder.*`` options are :class:`SAMEncoder`'s own)."""
    from ..arguments import command_parser

    p = command_parser(
        'extract-features',
        'Compute the frozen SAM encoder features once and store them on disk (float16 memmaps), for head training '
        'from the cache (sam_cffnet.features.CachedFeatureDataModule) or as SAM embeddings for other models. With '
        '--config, any further --model.* / --data.* / --trainer.* option is passed to the config parser (as fit '
        'takes it).',
    )
    p.add_argument('--config', '-c', type=str, default=None,
                   help='training config (YAML path or shipped recipe name): model + data')  # fmt: skip
    p.add_argument('--images', type=str, default=None, help='a folder of images (PNG/JPEG/TIFF) instead of a config')
    p.add_argument('--output', '-o', type=str, required=True,
                   help='cache root folder (one sub-folder per split and key)')  # fmt: skip
    p.add_argument('--split', nargs='+', default=['train', 'val'], choices=SPLIT_NAMES, help='splits (with --config)')
    p.add_class_arguments(SAMEncoder, 'encoder', skip=set(_NOT_IMAGE_OPTIONS), instantiate=False)
    p.add_argument('--scale', type=float, default=1 / 255, help='pixel scale for --images (default 1/255)')
    p.add_argument('--batch-size', type=int, default=None, help='tiles per encoder call')
    p.add_argument('--num-workers', type=int, default=None, help='loader workers')
    p.add_argument('--device', type=str, default=None, help='cpu, cuda, cuda:1 ... (default: cuda if available)')
    p.add_argument('--overwrite', action='store_true', help='replace existing caches')
    return p


def parse_args(argv: Sequence[str]) -> tuple[Any, list[str]]:
    """Parse the arguments of ``extract-features``.

    Args:
        argv: the command's arguments.

    Returns:
        ``(args, overrides)``: the parsed options and, with ``--config``, the remaining config overrides
        (``--model.*``, ``--data.*``, ...) for the training CLI's parser.

    Raises:
        ConfigError: a wrong option or value (one line), ``--config`` and ``--images`` both or neither given, an
            ``--images`` option given with ``--config``, or unknown arguments with ``--images``.
    """
    from ..arguments import parse_command, split_overrides

    parser = build_parser()
    own, overrides = split_overrides(parser, argv, own_prefixes=('--encoder.',))
    args = parse_command(parser, own)
    if (args.config is None) == (args.images is None):
        raise ConfigError('extract-features: give either --config (a training config) or --images (a folder)')
    if args.images is not None and overrides:
        raise ConfigError(f'extract-features --images: unknown arguments {overrides}')
    given = [t.split('=', 1)[0] for t in own if t.startswith(_IMAGE_ONLY)]
    if args.config is not None and given:
        raise ConfigError(
            f'extract-features --config: {", ".join(given)}: for --images only; the encoder of a config is set '
            f'by its model options (e.g. --model.model.init_args.variant)'
        )
    return args, overrides


def _device(args: Any) -> str:
    return args.device or ('cuda' if torch.cuda.is_available() else 'cpu')


def extract_images(args: Any) -> int:
    """``extract-features --images``: SAM features of a folder, the encoder built from the ``--encoder.*`` options.

    Args:
        args: from :func:`parse_args`.

    Returns:
        0.
    """
    probe = ImageFolder(args.images)[0]['image']
    encoder = SAMEncoder(**vars(args.encoder), in_channels=probe.shape[0])
    extract_folder(encoder, args.images, args.output, args.scale, args.batch_size or 4, _device(args), args.overwrite)
    return 0


def extract_config_splits(args: Any, model: nn.Module, datamodule: Any) -> int:
    """``extract-features --config``: the caches of ``--split`` of a config's datamodule, with its model's encoder.

    Args:
        args: from :func:`parse_args`.
        model: the config's model (built by the training CLI).
        datamodule: the config's datamodule (a :class:`~sam_cffnet.features.CachedFeatureDataModule` is unwrapped).

    Returns:
        0.

    Raises:
        ConfigError: the model has no frozen SAM encoder.
    """
    encoder = getattr(model, 'encoder', None)
    if encoder is None or not hasattr(encoder, 'fingerprint'):
        raise ConfigError(f'{args.config}: {type(model).__name__} has no frozen SAM encoder to extract')
    datamodule = getattr(datamodule, 'datamodule', datamodule)  # a CachedFeatureDataModule: the one it wraps
    datamodule.prepare_data()
    for split, dataset in split_datasets(datamodule, args.split).items():
        extract_split(encoder, datamodule, split, args.output, args.batch_size, args.num_workers, _device(args),
                      args.overwrite, dataset=dataset)  # fmt: skip
    return 0
