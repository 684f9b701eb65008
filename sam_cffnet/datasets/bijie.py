"""Bijie landslide dataset (Ji et al. 2020), read in its original distributed layout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchgeo.datasets import NonGeoDataset

from ..errors import ConfigError
from ..preprocessing import resize_sample
from .checks import verify_png
from .errors import DatasetLayoutError, LayoutNotFoundError
from .files import PathLike
from .labels import LabelEncoding, LabelReader, grey_label, label_values
from .plotting import RGBPlotMixin

LAYOUT = """\
<root>/                                   (or <root>/Bijie-landslide-dataset/, or <root>/*/Bijie-landslide-dataset/)
├── landslide/
│   ├── image/<name>.png      RGB uint8 chip (variable size)
│   ├── mask/<name>.png       same basename and size, single-channel 0/255 (255 = landslide)
│   └── dem/<name>.png        same basename, 1 band (8/16 bit, any grid)   [only with dem_mode != 'none']
└── non-landslide/
    ├── image/<name>.png      (no masks: all-zero masks are synthesized)
    └── dem/<name>.png                                                     [only with dem_mode != 'none']"""


#: Bijie masks: single-channel PNG, 0 = background, 255 = landslide (verified on all 770 masks of a lossless copy).
LABELS = LabelEncoding(
    name='Bijie mask PNGs',
    values=(0, 255),
    threshold=127,
    hint='Write the masks as single-channel 0/255 PNGs (from a 0/1 array m: '
    'Image.fromarray((m > 0).astype(np.uint8) * 255).save(path)).',
)


class Bijie(RGBPlotMixin, LabelReader, NonGeoDataset):
    """Bijie landslide dataset.

    Optical chips of Bijie city (Guizhou, China) with landslide masks and a DEM, for binary landslide
    segmentation.

    Dataset features:

    * 770 landslide chips with masks and 2003 non-landslide chips (no masks: all-zero masks are returned)
    * TripleSat RGB, ~0.8 m GSD, May-Aug 2018; variable chip sizes (61..1239 px)
    * one DEM PNG per chip on a coarser grid (bilinearly resampled to the image grid here)

    Dataset format (as distributed)::

        Bijie-landslide-dataset/
        ├── landslide/{image,mask,dem,polygon_coordinate}/
        └── non-landslide/{image,dem}/

    The root may be the ``Bijie-landslide-dataset`` folder itself or any folder containing it (one or two levels
    up). ``polygon_coordinate`` is ignored.

    Bands: ``red, green, blue`` (uint8, returned as float 0..255), optional ``dem`` (raw PNG values as float).

    Sample: ``image`` float32 ``(C, H, W)`` (C = 3, or 4 with ``dem_mode='band'``), ``mask`` int64 ``(H, W)`` in {0, 1}
    (mask > 127), and ``dem`` float32 ``(1, H, W)`` with ``dem_mode='separate'``. Values are NOT normalized.

    Mask values: 0 = background, 1 = landslide. The files store single-channel 0/255 (:data:`LABELS`); 1-bit PNGs
    are read as 0/255, palette PNGs through their palette, and RGB(A) PNGs only when every channel is equal. A mask
    with any other value (e.g. a 0/1 mask, which ``> 127`` would make all background) or a colour-coded mask stops
    with an error naming the file, at construction with ``verify=True`` and whenever the mask is read.

    Licence: none stated by the publisher (research use; cite the paper).

    If you use this dataset in your research, please cite:

    * Ji, S., Yu, D., Shen, C., Li, W., Xu, Q. (2020). Landslide detection from an open satellite imagery and
      digital elevation model dataset using attention boosted convolutional neural networks.
      Landslides 17, 1337-1352. https://doi.org/10.1007/s10346-020-01353-2
    """

    all_bands = ('red', 'green', 'blue')
    rgb_bands = ('red', 'green', 'blue')
    classes = ('background', 'landslide')
    categories = ('landslide', 'non-landslide')
    layout = LAYOUT
    label_encoding = LABELS

    def __init__(
        self,
        root: PathLike = 'data',
        dem_mode: Literal['none', 'band', 'separate'] = 'none',
        categories: tuple[str, ...] = ('landslide', 'non-landslide'),
        transforms: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
        verify: bool = True,
    ) -> None:
        """Index the chips and check the layout.

        Args:
            root: Dataset root (see the class docstring).
            dem_mode: ``'none'``; ``'band'`` appends the DEM as a 4th image channel; ``'separate'`` returns it under
                ``'dem'``.
            categories: Which folders to use (``'landslide'`` and/or ``'non-landslide'``).
            transforms: Callable applied to each sample dict.
            verify: Check every PNG for truncation/corruption (CRC walk) and decode every mask to check its values
                against the documented 0/255 encoding, at construction.

        Raises:
            ConfigError: For an unknown ``dem_mode`` or category.
            LayoutNotFoundError: If the root or the image folders are missing or empty.
            DatasetLayoutError: If an image has no mask (or DEM), sizes differ, a file is unreadable or (with
                ``verify``) a mask is not a 0/255 mask.
        """
        if dem_mode not in ('none', 'band', 'separate'):
            raise ConfigError(f"dem_mode must be 'none', 'band' or 'separate', got {dem_mode!r}")
        for c in categories:
            if c not in self.categories:
                raise ConfigError(f'unknown category {c!r}, expected a subset of {self.categories}')
        self.root = root
        self.dem_mode = dem_mode
        self.transforms = transforms
        self.data_root = self._find_root(Path(root))
        self.files: list[dict[str, Any]] = []
        self.sizes: list[tuple[int, int]] = []
        label_warnings: list[str | None] = []
        for category in categories:
            label_warnings += self._index(category, verify)
        self.warn_labels(label_warnings)
        if not self.files:
            raise LayoutNotFoundError(root, 'no PNG chips found', LAYOUT)

    def _find_root(self, root: Path) -> Path:
        if not root.is_dir():
            raise LayoutNotFoundError(root, 'the folder does not exist', LAYOUT)
        candidates = [root, root / 'Bijie-landslide-dataset', *sorted(root.glob('*/Bijie-landslide-dataset'))]
        for cand in candidates:
            if (cand / 'landslide').is_dir() or (cand / 'non-landslide').is_dir():
                return cand
        raise LayoutNotFoundError(root, 'no landslide/ or non-landslide/ folder found', LAYOUT)

    def _index(self, category: str, verify: bool) -> list[str | None]:
        checks: list[str | None] = []
        folder = self.data_root / category
        image_dir = folder / 'image'
        if not image_dir.is_dir():
            raise LayoutNotFoundError(self.root, f'missing folder {image_dir}', LAYOUT)
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() == '.png')
        if not images:
            raise LayoutNotFoundError(self.root, f'no .png files in {image_dir}', LAYOUT)
        landslide = category == 'landslide'
        for img in images:
            entry: dict[str, Any] = {'image': img, 'mask': None, 'dem': None, 'landslide': landslide}
            if landslide:
                entry['mask'] = folder / 'mask' / img.name
                if not entry['mask'].is_file():
                    raise DatasetLayoutError(img, f'landslide image without mask (expected {entry["mask"]})', LAYOUT)
            if self.dem_mode != 'none':
                entry['dem'] = folder / 'dem' / img.name
                if not entry['dem'].is_file():
                    raise DatasetLayoutError(img, f'image without DEM (expected {entry["dem"]}); use dem_mode="none"')
            size = self._png_size(img, verify)
            if entry['mask'] is not None:
                msize = self._png_size(entry['mask'], verify)
                if msize != size:
                    raise DatasetLayoutError(
                        entry['mask'], f'mask size {msize[1]}x{msize[0]} != image size {size[1]}x{size[0]} (WxH)'
                    )
                if verify:
                    label = self._read_label(entry['mask'])
                    checks.append(self.label_encoding.check(label_values(label), entry['mask']))
            if entry['dem'] is not None:
                self._png_size(entry['dem'], verify)
            self.files.append(entry)
            self.sizes.append(size)
        return checks

    @staticmethod
    def _png_size(path: Path, verify: bool) -> tuple[int, int]:
        if verify:
            verify_png(path)
        try:
            with Image.open(path) as im:
                return im.height, im.width
        except Exception as err:
            raise DatasetLayoutError(path, f'unreadable image ({err})') from err

    def __len__(self) -> int:
        """Number of chips."""
        return len(self.files)

    @property
    def is_landslide(self) -> list[bool]:
        """Per-chip flag: True for chips from ``landslide/`` (used for stratified splits)."""
        return [f['landslide'] for f in self.files]

    def _load_image(self, path: Path) -> Tensor:
        with Image.open(path) as im:
            arr = np.asarray(im.convert('RGB'))
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float()

    @staticmethod
    def _read_label(path: Path) -> np.ndarray:
        """The values of a mask PNG, ``(H, W)`` (1-bit: 0/255; palette: its colours; RGB(A): equal channels)."""
        try:
            with Image.open(path) as im:
                if im.mode == '1':
                    im = im.convert('L')
                elif im.mode in ('P', 'PA'):
                    im = im.convert('RGBA')
                arr = np.asarray(im)
        except Exception as err:
            raise DatasetLayoutError(path, f'unreadable mask ({err})') from err
        if arr.ndim == 3:  # drop alpha (LA: 2 channels, RGBA: 4), then the channels must agree
            arr = grey_label(np.moveaxis(arr[..., :1] if arr.shape[-1] == 2 else arr[..., :3], -1, 0), path)
        return arr

    def _load_mask(self, path: Path | None, size: tuple[int, int]) -> Tensor:
        if path is None:
            return torch.zeros(size, dtype=torch.long)
        return self.label_mask(self._read_label(path), path)

    def _load_dem(self, path: Path, size: tuple[int, int]) -> Tensor:
        with Image.open(path) as im:
            arr = np.asarray(im).astype(np.float32)
        if arr.ndim == 3:
            arr = arr[..., 0]
        dem = torch.from_numpy(arr)[None]
        return resize_sample({'dem': dem}, *size)['dem']

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        """Load one chip.

        Args:
            index: Chip index.

        Returns:
            ``{'image': (C, H, W) float32, 'mask': (H, W) int64[, 'dem': (1, H, W) float32]}``.
        """
        entry = self.files[index]
        image = self._load_image(entry['image'])
        size = (image.shape[1], image.shape[2])
        sample = {'image': image, 'mask': self._load_mask(entry['mask'], size)}
        if entry['dem'] is not None:
            dem = self._load_dem(entry['dem'], size)
            if self.dem_mode == 'band':
                sample['image'] = torch.cat([image, dem])
            else:
                sample['dem'] = dem
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample
