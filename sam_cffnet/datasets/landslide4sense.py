"""Landslide4Sense (Ghorbanzadeh et al. 2022), read in the official competition layout."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor
from torchgeo.datasets import NonGeoDataset, RGBBandsMissingError

from ..errors import ConfigError
from ..visualize import percentile_stretch, plot_segmentation
from .checks import check_finite
from .errors import DatasetLayoutError, LayoutNotFoundError
from .files import PathLike, numeric_key
from .h5 import read_h5
from .labels import LabelEncoding, LabelReader, label_values
from .samples import tile_source_dict

LAYOUT = """\
<root>/
├── TrainData/img/image_1.h5 ...   (key 'img', 128 x 128 x 14 float, HWC)
├── TrainData/mask/mask_1.h5 ...   (key 'mask', 128 x 128, 0/1)
├── ValidData/img/image_N.h5       [ValidData/mask/mask_N.h5 optional]
└── TestData/img/image_N.h5        [TestData/mask/mask_N.h5 optional]"""

BandSpec = str | Sequence[str | int]

#: Landslide4Sense masks: h5 dataset ``mask``, 0 = non-landslide, 1 = landslide (uint8 or float). Files holding 0/255
#: are accepted with a warning: the rule ``value > 0`` gives them the same labels.
LABELS = LabelEncoding(
    name='Landslide4Sense masks',
    values=(0, 1),
    threshold=0,
    fallback=(0, 255),
    hint="Write the 'mask' dataset with 0 = non-landslide and 1 = landslide.",
)


class Landslide4Sense(LabelReader, NonGeoDataset):
    """Landslide4Sense (L4S) landslide segmentation dataset.

    Multi-source 128 x 128 patches (Sentinel-2 + ALOS PALSAR slope and DEM, ~10 m) from four landslide-affected
    regions, for binary landslide segmentation.

    Dataset features:

    * 3799 train / 245 validation / 800 test patches of 128 x 128 px
    * 14 bands: Sentinel-2 B1-B12 without B8A, ALOS PALSAR slope and DEM (pre-scaled floats, ~0..7, B10 up to ~50)
    * masks: 0 = non-landslide, 1 = landslide (train; val/test masks only in the later Zenodo release)

    Dataset format (official competition layout)::

        TrainData/img/image_N.h5   TrainData/mask/mask_N.h5   (N = 1.., numeric order)
        ValidData/img/image_N.h5   [ValidData/mask/mask_N.h5]
        TestData/img/image_N.h5    [TestData/mask/mask_N.h5]

    Bands (index: name): 0 B1, 1 B2, 2 B3, 3 B4, 4 B5, 5 B6, 6 B7, 7 B8, 8 B9, 9 B10, 10 B11, 11 B12, 12 slope, 13 dem.
    RGB = B4, B3, B2 (indices 3, 2, 1).

    Sample: ``image`` float32 ``(C, 128, 128)`` raw values of the selected bands, ``mask`` int64 ``(128, 128)``
    (only when the split has masks), ``dem`` float32 ``(2, 128, 128)`` (slope, dem) with ``dem_mode='separate'``.

    NaN/inf values: replaced by 0 with a RuntimeWarning (``nan_policy='fill'``, default), or an error naming the
    file (``nan_policy='error'``). They are detected when a file is read.

    Mask values (:data:`LABELS`): 0/1 as documented, uint8 or float, read as ``mask > 0``. Masks stored as 0/255 give
    the same labels under that rule and are accepted with one warning. Any other value (e.g. 1/2, which ``> 0``
    would make all landslide, or fractions) stops with an error naming the file: at construction with
    ``verify=True``, and whenever the mask is read.

    Licence: MIT (official GitHub repository, (c) 2022 IARAI).

    If you use this dataset in your research, please cite:

    * Ghorbanzadeh, O., Xu, Y., Ghamisi, P., Kopp, M., Kreil, D. (2022). Landslide4Sense: Reference Benchmark
      Data and Deep Learning Models for Landslide Detection. IEEE TGRS 60. https://arxiv.org/abs/2206.00515
    """

    all_bands = ('B1', 'B2', 'B3', 'B4', 'B5', 'B6', 'B7', 'B8', 'B9', 'B10', 'B11', 'B12', 'slope', 'dem')
    rgb_bands = ('B4', 'B3', 'B2')
    dem_bands = ('slope', 'dem')
    classes = ('background', 'landslide')
    split_dirs: ClassVar[dict[str, str]] = {'train': 'TrainData', 'val': 'ValidData', 'test': 'TestData'}
    image_key = 'img'
    mask_key = 'mask'
    layout = LAYOUT
    label_encoding = LABELS

    def __init__(
        self,
        root: PathLike = 'data',
        split: Literal['train', 'val', 'test'] = 'train',
        bands: BandSpec = 'all',
        dem_mode: Literal['none', 'band', 'separate'] = 'none',
        transforms: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
        require_masks: bool = False,
        nan_policy: Literal['fill', 'error'] = 'fill',
        verify: bool = True,
    ) -> None:
        """Index a split and check the layout.

        Args:
            root: Folder holding ``TrainData/``, ``ValidData/``, ``TestData/``.
            split: ``'train'``, ``'val'`` or ``'test'``.
            bands: ``'all'`` (14), ``'rgb'`` (B4, B3, B2), or a sequence of band names or 0-based indices.
            dem_mode: ``'none'``; ``'band'`` appends slope and dem to the image channels; ``'separate'`` returns them
                under ``'dem'`` (2, H, W). With ``dem != 'none'`` the selected bands must not include them.
            transforms: Callable applied to each sample dict.
            require_masks: Raise if the split has no ``mask/`` folder.
            nan_policy: ``'fill'`` (replace by 0 and warn) or ``'error'``.
            verify: Open every file at construction (h5 structure, key, shape, band count; catches truncation) and
                read every mask to check its values.

        Raises:
            ConfigError: For an unknown split, band, ``dem_mode`` or ``nan_policy``.
            LayoutNotFoundError: If the split folder is missing or empty.
            DatasetLayoutError: For missing masks, wrong shapes/band counts, unreadable files or (with ``verify``)
                mask values that are not 0/1 (or 0/255).
        """
        if split not in self.split_dirs:
            raise ConfigError(f'split must be one of {list(self.split_dirs)}, got {split!r}')
        if dem_mode not in ('none', 'band', 'separate'):
            raise ConfigError(f"dem_mode must be 'none', 'band' or 'separate', got {dem_mode!r}")
        if nan_policy not in ('fill', 'error'):
            raise ConfigError(f"nan_policy must be 'fill' or 'error', got {nan_policy!r}")
        self.root = root
        self.split = split
        self.band_indices = self.resolve_bands(bands)
        self.bands = tuple(self.all_bands[i] for i in self.band_indices)
        self.dem_indices = [self.all_bands.index(b) for b in self.dem_bands]
        if dem_mode != 'none' and set(self.band_indices) & set(self.dem_indices):
            raise ConfigError(
                f'with dem_mode={dem_mode!r} the bands must not include {self.dem_bands} (got {self.bands})'
            )
        self.dem_mode = dem_mode
        self.transforms = transforms
        self.nan_policy = nan_policy

        if not Path(root).is_dir():
            raise LayoutNotFoundError(root, 'the folder does not exist', LAYOUT)
        split_dir = Path(root) / self.split_dirs[split]
        img_dir = split_dir / 'img'
        if not img_dir.is_dir():
            raise LayoutNotFoundError(root, f'missing folder {img_dir}', LAYOUT)
        self.images = sorted(img_dir.glob('*.h5'), key=numeric_key)
        if not self.images:
            raise LayoutNotFoundError(root, f'no .h5 files in {img_dir}', LAYOUT)
        mask_dir = split_dir / 'mask'
        self.has_masks = mask_dir.is_dir()
        if require_masks and not self.has_masks:
            raise LayoutNotFoundError(root, f'split {split!r} has no masks (missing {mask_dir})', LAYOUT)
        self.masks: list[Path] | None = None
        if self.has_masks:
            self.masks = [mask_dir / p.name.replace('image', 'mask') for p in self.images]
            for img, msk in zip(self.images, self.masks):
                if not msk.is_file():
                    raise DatasetLayoutError(img, f'image without mask (expected {msk})', LAYOUT)
        if verify:
            self._verify()

    @classmethod
    def resolve_bands(cls, bands: BandSpec) -> list[int]:
        """Turn a band specification into 0-based indices.

        Args:
            bands: ``'all'``, ``'rgb'``, a band name, or a sequence of names / 0-based indices.

        Returns:
            List of indices into :attr:`all_bands`.

        Raises:
            ConfigError: For an unknown band or an empty selection.
        """
        if isinstance(bands, str):
            if bands == 'all':
                return list(range(len(cls.all_bands)))
            if bands == 'rgb':
                return [cls.all_bands.index(b) for b in cls.rgb_bands]
            bands = [bands]
        out = []
        for b in bands:
            if isinstance(b, str) and b in cls.all_bands:
                out.append(cls.all_bands.index(b))
            elif isinstance(b, int) and not isinstance(b, bool) and 0 <= b < len(cls.all_bands):
                out.append(b)
            else:
                raise ConfigError(f'unknown band {b!r}: use names {cls.all_bands} or indices 0..13')
        if not out:
            raise ConfigError('at least one band must be selected')
        return out

    def _verify(self) -> None:
        nb = len(self.all_bands)
        checks: list[str | None] = []
        for i, img in enumerate(self.images):
            shape = read_h5(img, [self.image_key], shape_only=[self.image_key])[self.image_key]
            if len(shape) != 3 or nb not in (shape[0], shape[-1]):
                raise DatasetLayoutError(img, f'expected {nb} bands in an (H, W, {nb}) array, got shape {shape}')
            hw = shape[:2] if shape[-1] == nb else shape[1:]
            if self.masks is not None:
                msk = self.masks[i]
                mask = read_h5(msk, [self.mask_key])[self.mask_key]
                if tuple(s for s in mask.shape if s != 1)[:2] != tuple(hw):
                    raise DatasetLayoutError(msk, f'mask shape {mask.shape} does not match image size {hw}')
                checks.append(self.label_encoding.check(label_values(self._finite_mask(mask, msk)), msk))
        self.warn_labels(checks)

    def __len__(self) -> int:
        """Number of patches in the split."""
        return len(self.images)

    def _finite_mask(self, mask: np.ndarray, path: Path) -> np.ndarray:
        """``(H, W)`` mask values with NaN/inf handled by ``nan_policy`` (0 = background, with a warning)."""
        return check_finite(np.squeeze(mask), path, self.nan_policy)

    def tile_source(self, index: int) -> dict[str, Any]:
        """Where patch ``index`` comes from, for writers of predictions.

        Its ``image_N.h5`` name and its size, 128 x 128.
        """
        path = self.images[index]
        h, w = read_h5(path, [self.image_key], shape_only=[self.image_key])[self.image_key][:2]
        return tile_source_dict(path.stem, h, w)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        """Load one patch.

        Args:
            index: Patch index (numeric order of N in ``image_N.h5``).

        Returns:
            ``{'image': (C, H, W) float32[, 'mask': (H, W) int64][, 'dem': (2, H, W) float32]}``.
        """
        path = self.images[index]
        arr = read_h5(path, [self.image_key])[self.image_key]
        if arr.shape[-1] != len(self.all_bands):
            arr = np.moveaxis(arr, 0, -1)
        arr = check_finite(arr.astype(np.float32), path, self.nan_policy)
        full = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        sample = {'image': full[self.band_indices]}
        if self.dem_mode == 'band':
            sample['image'] = torch.cat([sample['image'], full[self.dem_indices]])
        elif self.dem_mode == 'separate':
            sample['dem'] = full[self.dem_indices]
        if self.masks is not None:
            msk = self.masks[index]
            sample['mask'] = self.label_mask(self._finite_mask(read_h5(msk, [self.mask_key])[self.mask_key], msk), msk)
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def plot(self, sample: dict[str, Tensor], show_titles: bool = True, suptitle: str | None = None) -> Any:
        """Plot a sample (RGB composite B4/B3/B2, mask and ``prediction`` when present).

        Args:
            sample: A sample from ``__getitem__`` (bands as selected at construction).
            show_titles: Add titles.
            suptitle: Figure title.

        Returns:
            A matplotlib Figure.

        Raises:
            RGBBandsMissingError: If B4, B3 or B2 were not selected.
        """
        try:
            idx = [self.bands.index(b) for b in self.rgb_bands]
        except ValueError as err:
            raise RGBBandsMissingError() from err
        rgb = percentile_stretch(sample['image'][idx].permute(1, 2, 0).cpu().numpy())
        return plot_segmentation(rgb, sample.get('mask'), sample.get('prediction'), show_titles, suptitle)
