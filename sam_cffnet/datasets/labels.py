"""Label values: the documented encoding of each dataset's label files, its check, and label rasters.

:class:`LabelEncoding` is the single place where label values become landslide/background: each dataset declares
its documented encoding, and every label file is checked against it when it is read (and at construction with
``verify=True``), so a file in another encoding stops with an error naming it instead of silently becoming all
background or all landslide.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from .errors import DatasetLayoutError
from .files import PathLike
from .rasters import open_raster

__all__ = [
    'LabelEncoding',
    'LabelReader',
    'grey_label',
    'label_raster_layout',
    'label_values',
    'raster_label_values',
    'raster_label_window',
]


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f'{value:g}'


def _format_values(values: Sequence[float] | np.ndarray, most: int = 8) -> str:
    values = list(np.asarray(values, dtype=np.float64).ravel())
    shown = ', '.join(_format_number(v) for v in values[:most])
    return f'{{{shown}, ... ({len(values)} values)}}' if len(values) > most else f'{{{shown}}}'


def label_values(array: np.ndarray) -> np.ndarray:
    """The distinct values of a label array, sorted (fast for 8- and 16-bit integers, NaN kept).

    Args:
        array: Label array of any shape and dtype.

    Returns:
        1-D array of the distinct values.
    """
    a = np.asarray(array)
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    if a.dtype in (np.uint8, np.uint16):  # a table of seen values: no sort, no copy of the array
        seen = np.zeros(np.iinfo(a.dtype).max + 1, dtype=bool)
        seen[a.ravel()] = True
        return np.flatnonzero(seen).astype(a.dtype)
    return np.unique(a)


@dataclass(frozen=True)
class LabelEncoding:
    """The documented value encoding of a dataset's label files, and the check that a file follows it.

    A pixel is landslide when its value is ``> threshold``. :meth:`check` refuses a file whose values would change
    meaning under that rule: above all a file that, read as documented, would be all background (a 0/1 mask where
    0/255 is documented) or all landslide (a 1/2 mask where 0/1 is documented).

    Attributes:
        name: What the files are, for messages (``'Bijie mask PNGs'``).
        values: The documented values (background first), e.g. ``(0, 255)``.
        threshold: Landslide means ``value > threshold`` (the rule of the dataset's own code).
        fallback: Another value set accepted with a warning, where the same rule is known to give the right labels
            (Landslide4Sense masks stored as 0/255).
        other_values: Undocumented values that the rule still splits into both classes (anti-aliased or resampled
            masks): ``'error'``, ``'warn'`` or ``'accept'``.
        hint: How to fix a refused file (appended to the error).
    """

    name: str
    values: tuple[float, ...]
    threshold: float
    fallback: tuple[float, ...] = ()
    other_values: Literal['error', 'warn', 'accept'] = 'error'
    hint: str = ''

    def describe(self) -> str:
        """One phrase: the documented values and the rule."""
        return (
            f'{self.name} are documented as {_format_values(self.values)} '
            f'(landslide = value > {_format_number(self.threshold)})'
        )

    def check(self, values: Sequence[float] | np.ndarray, path: PathLike) -> str | None:
        """Check the distinct values of one label file (or one window of it).

        Args:
            values: The distinct values found (:func:`label_values`).
            path: The file, named in the error or warning.

        Returns:
            None when the values are documented; a warning text when they are accepted anyway (the fallback, or
            undocumented values with ``other_values='warn'``).

        Raises:
            DatasetLayoutError: If the values would make the file all background or all landslide while not being
                documented, contain NaN, or are undocumented with ``other_values='error'``.
        """
        v = np.asarray(values, dtype=np.float64).ravel()
        fix = f' {self.hint}' if self.hint else ''
        if np.isnan(v).any():
            raise DatasetLayoutError(path, f'NaN label values; {self.describe()}.{fix}')
        documented = np.isin(v, self.values)
        if documented.all():
            return None
        found = f'label values {_format_values(v)}'
        if self.fallback and np.isin(v, self.fallback).all():
            return (
                f'{path}: {found}, but {self.describe()}; read with the same rule, which gives the same labels for '
                f'{_format_values(self.fallback)}'
            )
        positive = v > self.threshold
        if not positive.any():
            kind = ' (a 0/1 mask)' if set(v.tolist()) <= {0.0, 1.0} else ''
            raise DatasetLayoutError(
                path, f'{found}{kind}, but {self.describe()}: read as documented, every pixel would be background.{fix}'
            )
        if positive.all():
            raise DatasetLayoutError(
                path, f'{found}, but {self.describe()}: read as documented, every pixel would be landslide.{fix}'
            )
        undocumented = _format_values(v[~documented])
        if self.other_values == 'error':
            raise DatasetLayoutError(path, f'{found}: {undocumented} not documented; {self.describe()}.{fix}')
        if self.other_values == 'warn':
            return f'{path}: {found}: {undocumented} not documented; {self.describe()}, read with that rule'
        return None

    def binarize(self, label: np.ndarray) -> np.ndarray:
        """Landslide (1) / background (0) of a label array.

        Args:
            label: Label values, any shape.

        Returns:
            int64 array of the same shape, ``label > threshold``.
        """
        return (np.asarray(label) > self.threshold).astype(np.int64)


class LabelReader:
    """Datasets with label files: check each label array against :attr:`label_encoding`, then binarize it.

    Warnings (accepted fallbacks) are given once per dataset object, naming the first file, so an epoch over
    thousands of files does not repeat them; errors always name the file.
    """

    label_encoding: ClassVar[LabelEncoding]

    def label_mask(self, label: np.ndarray, path: PathLike) -> Tensor:
        """Check a label array read from ``path`` and return its binary mask.

        Args:
            label: Label values ``(H, W)``.
            path: The file it came from.

        Returns:
            int64 tensor ``(H, W)`` in {0, 1}.

        Raises:
            DatasetLayoutError: If the values do not follow the dataset's encoding (see :meth:`LabelEncoding.check`).
        """
        self.warn_labels([self.label_encoding.check(label_values(label), path)])
        return torch.from_numpy(self.label_encoding.binarize(label))

    def warn_labels(self, messages: Iterable[str | None]) -> None:
        """Give the first of the warnings of :meth:`LabelEncoding.check` (once per dataset), counting the others.

        Args:
            messages: Results of :meth:`LabelEncoding.check` (None for files without a warning).
        """
        found = [m for m in messages if m]
        if not found or self.__dict__.get('_labels_warned'):
            return
        more = f' ({len(found) - 1} more label files like it)' if len(found) > 1 else ''
        warnings.warn(f'{found[0]}{more}; further files are not reported', UserWarning, stacklevel=3)
        self._labels_warned = True


def grey_label(channels: np.ndarray, path: PathLike) -> np.ndarray:
    """The single channel of a label stored with several equal channels (grey saved as RGB).

    Args:
        channels: ``(C, H, W)`` label channels (alpha already removed).
        path: The file, named in the error.

    Returns:
        ``(H, W)``: the first channel.

    Raises:
        DatasetLayoutError: If the channels differ (a colour-coded mask: its meaning is not documented, and a grey
            conversion could turn landslide into background).
    """
    if channels.ndim == 2:
        return channels
    first = channels[0]
    for c in range(1, channels.shape[0]):
        if not np.array_equal(channels[c], first):
            raise DatasetLayoutError(
                path, f'colour-coded label ({channels.shape[0]} channels that differ); expected a single-channel '
                'grey mask (or the same values in every channel)'
            )  # fmt: skip
    return first


def label_raster_layout(src: Any) -> tuple[list[int], np.ndarray | None]:
    """How to read the label of an open raster: the bands, and a palette lookup table when it has one.

    Args:
        src: An open ``rasterio`` dataset.

    Returns:
        ``(bands, lut)``: 1-based bands (``[1]`` for a grey or palette raster, ``[1, 2, 3]`` for RGB/RGBA: they are
        checked to be equal, see :func:`grey_label`); ``lut`` ``(256, 3)`` uint8 maps palette indices to the colours
        viewers show (None without a palette).
    """
    from rasterio.enums import ColorInterp

    if src.count >= 3:
        return [1, 2, 3], None
    if src.colorinterp[0] == ColorInterp.palette:
        lut = np.zeros((256, 3), dtype=np.uint8)
        for index, colour in src.colormap(1).items():
            if 0 <= index < 256:
                lut[index] = colour[:3]
        return [1], lut
    return [1], None


def raster_label_window(data: np.ndarray, lut: np.ndarray | None, path: PathLike) -> np.ndarray:
    """Turn the bands read by :func:`label_raster_layout` into one label channel.

    Args:
        data: ``(C, h, w)`` as read.
        lut: The palette lookup table, or None.
        path: The file, named in errors.

    Returns:
        ``(h, w)`` label values.
    """
    if lut is not None:
        data = np.moveaxis(lut[data[0]], -1, 0)
    return grey_label(data, path)


def raster_label_values(path: PathLike, strip_rows: int = 256) -> np.ndarray:
    """The distinct label values of a (possibly huge) label raster, streamed strip by strip.

    Memory stays bounded by one strip of ``strip_rows`` full-width rows (and a 16 MiB GDAL block cache unless
    ``GDAL_CACHEMAX`` is set); the whole scene is never decoded at once. A 10808 x 7424 map (GVLM's largest scene)
    takes about 1.5 s on one CPU core.

    Args:
        path: The label raster (PNG, TIFF, ...).
        strip_rows: Rows read per step.

    Returns:
        Sorted distinct values (after palette lookup and the equal-channels check of :func:`grey_label`).

    Raises:
        DatasetLayoutError: If the file cannot be read or its channels differ.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    seen: np.ndarray = np.empty(0)
    env = {} if 'GDAL_CACHEMAX' in os.environ else {'GDAL_CACHEMAX': 16 * 2**20}  # strips are read once: no cache
    try:
        with warnings.catch_warnings(), rasterio.Env(**env), open_raster(path) as src:
            warnings.simplefilter('ignore', NotGeoreferencedWarning)
            bands, lut = label_raster_layout(src)
            for row in range(0, src.height, strip_rows):
                h = min(strip_rows, src.height - row)
                data = src.read(bands, window=Window(0, row, src.width, h))
                seen = np.union1d(seen, label_values(raster_label_window(data, lut, path)))
    except DatasetLayoutError:
        raise
    except Exception as err:
        raise DatasetLayoutError(path, f'unreadable label raster ({err})') from err
    return seen
