"""The SAM-CFFNet authors' preprocessed H5 tiles (``<root>/{train,val}/*.h5`` with ``image`` and ``label``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torchgeo.datasets import NonGeoDataset

from ..errors import ConfigError
from .checks import check_finite
from .errors import DatasetLayoutError, LayoutNotFoundError
from .files import PathLike
from .h5 import read_h5
from .labels import LabelEncoding, LabelReader, label_values
from .plotting import RGBPlotMixin

LAYOUT = """\
<root>/
├── train/<name>.h5     keys 'image' (H, W, C) uint8 and 'label' (H, W) 0/255
└── val/<name>.h5"""


#: The authors' labels: 0/255, binarized with ``label > 128`` (their ``h5_Dataset``). Other values are accepted
#: silently, as their loader does (their offline tiling may leave intermediate values), unless the rule would make
#: the tile all background (e.g. a 0/1 label) or all landslide.
LABELS = LabelEncoding(
    name="The authors' H5 labels",
    values=(0, 255),
    threshold=128,
    other_values='accept',
    hint="Write 'label' as 0/255 (from a 0/1 array m: (m > 0).astype(np.uint8) * 255).",
)


class ReferenceTiles(RGBPlotMixin, LabelReader, NonGeoDataset):
    """Tiles in the SAM-CFFNet authors' preprocessed H5 format (BJL, L4S or GVLM after their offline tiling).

    The authors' loader (``utils/tools.py: h5_Dataset``) reads ``<root>/{train,val}/*.h5`` in sorted order; each
    file holds ``image`` (HWC uint8, 256 x 256 x 3) and ``label`` (0/255, binarized as ``label > 128``). This class
    reads the same files, so users holding the authors' processed data can train and evaluate on it directly.

    Dataset features:

    * only ``train`` and ``val`` splits exist (the paper reports on ``val``, which also selected the checkpoint)
    * 256 x 256 tiles, RGB uint8

    Bands: ``red, green, blue`` (returned as float 0..255, not normalized).

    Sample: ``image`` float32 ``(C, H, W)``, ``mask`` int64 ``(H, W)`` in {0, 1}.

    Label values (:data:`LABELS`): 0/255 read with the authors' rule ``label > 128``; intermediate values are
    accepted as their loader accepts them. A label that rule would make all background while holding other values
    (a 0/1 label: every ``1 <= 128``) or all landslide stops with an error naming the file, at construction with
    ``verify=True`` and whenever the label is read.

    Licence: that of the underlying dataset (Bijie: none stated; L4S: MIT; GVLM: non-commercial research).

    If you use this format, please cite SAM-CFFNet:

    * Xi, Yu, Ge, Pang, Zhou, Hou, Li, Chen, Dong (2024). SAM-CFFNet: SAM-Based Cross-Feature Fusion Network
      for Intelligent Identification of Landslides. Remote Sensing 16(13), 2334. https://doi.org/10.3390/rs16132334
    """

    all_bands = ('red', 'green', 'blue')
    rgb_bands = ('red', 'green', 'blue')
    classes = ('background', 'landslide')
    splits = ('train', 'val')
    image_key = 'image'
    label_key = 'label'
    layout = LAYOUT
    label_encoding = LABELS

    def __init__(
        self,
        root: PathLike = 'data',
        split: Literal['train', 'val'] = 'train',
        num_bands: int | None = 3,
        transforms: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
        verify: bool = True,
    ) -> None:
        """Index a split.

        Args:
            root: Folder holding ``train/`` and ``val/``.
            split: ``'train'`` or ``'val'``.
            num_bands: Expected channel count (None: accept any, but all files must agree).
            transforms: Callable applied to each sample dict.
            verify: Open every file at construction (keys, shapes, band count; catches truncation) and read every
                label to check its values.

        Raises:
            ConfigError: For an unknown split.
            LayoutNotFoundError: If the split folder is missing or empty.
            DatasetLayoutError: For missing keys, shape mismatches, wrong band counts, unreadable files or (with
                ``verify``) labels that the ``> 128`` rule would make all background or all landslide.
        """
        if split not in self.splits:
            raise ConfigError(f'split must be one of {self.splits}, got {split!r}')
        self.root = root
        self.split = split
        self.transforms = transforms
        self.num_bands = num_bands
        if not Path(root).is_dir():
            raise LayoutNotFoundError(root, 'the folder does not exist', LAYOUT)
        folder = Path(root) / split
        if not folder.is_dir():
            raise LayoutNotFoundError(root, f'missing folder {folder}', LAYOUT)
        self.files = sorted(p for p in folder.iterdir() if p.suffix == '.h5')
        if not self.files:
            raise LayoutNotFoundError(root, f'no .h5 files in {folder}', LAYOUT)
        if verify:
            self._verify()

    def _verify(self) -> None:
        bands = self.num_bands
        checks: list[str | None] = []
        for path in self.files:
            data = read_h5(path, [self.image_key, self.label_key], shape_only=[self.image_key], layout=LAYOUT)
            ishape, label = data[self.image_key], data[self.label_key]
            c = ishape[2] if len(ishape) == 3 else 1
            if len(ishape) not in (2, 3):
                raise DatasetLayoutError(path, f'image must be (H, W, C) or (H, W), got {ishape}')
            if bands is not None and c != bands:
                raise DatasetLayoutError(path, f'expected {bands} bands (H, W, {bands}), got shape {ishape}')
            bands = c
            if tuple(s for s in label.shape if s != 1)[:2] != tuple(ishape[:2]):
                raise DatasetLayoutError(path, f'label shape {label.shape} does not match image size {ishape[:2]}')
            checks.append(self.label_encoding.check(label_values(label), path))
        self.num_bands = bands
        self.warn_labels(checks)

    def __len__(self) -> int:
        """Number of tiles in the split."""
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        """Load one tile.

        Args:
            index: Tile index (sorted file order).

        Returns:
            ``{'image': (C, H, W) float32, 'mask': (H, W) int64}``.
        """
        path = self.files[index]
        data = read_h5(path, [self.image_key, self.label_key], layout=LAYOUT)
        image, label = data[self.image_key], data[self.label_key]
        if image.ndim == 2:
            image = image[..., None]
        image = check_finite(image.astype(np.float32), path)
        sample = {
            'image': torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            'mask': self.label_mask(np.squeeze(label), path),
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample
