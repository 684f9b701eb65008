"""Shared helpers for the landslide datasets: errors, file checks, label encodings, windowed reads, tiling, plots.

Nothing here depends on a model. The tiling routine :func:`tile_starts` / :func:`tile_windows` is the single
place where scenes are cut into tiles (GVLM training tiles and whole-scene mapping use the same rule).
:class:`LabelEncoding` is the single place where label values become landslide/background: each dataset declares
its documented encoding, and every label file is checked against it when it is read (and at construction with
``verify=True``), so a file in another encoding stops with an error naming it instead of silently becoming all
background or all landslide.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor
from torchgeo.datasets import DatasetNotFoundError

from ..errors import DataError, SAMCFFNetError

PathLike = str | os.PathLike[str]

__all__ = [
    'DatasetLayoutError',
    'LabelEncoding',
    'LabelReader',
    'LayoutNotFoundError',
    'PathLike',
    'RGBPlotMixin',
    'cache_as_tiled_tiff',
    'check_finite',
    'grey_label',
    'label_raster_layout',
    'label_values',
    'numeric_key',
    'open_raster',
    'pad_to',
    'raster_label_values',
    'raster_shape',
    'read_h5',
    'read_raster_window',
    'verify_png',
]

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class LayoutNotFoundError(DatasetNotFoundError, SAMCFFNetError):
    """The dataset root is missing or holds none of the expected files.

    A :class:`torchgeo.datasets.DatasetNotFoundError` (so code that catches torchgeo's error keeps working) whose
    message names the path that was searched and the expected on-disk layout.
    """

    def __init__(self, root: PathLike, detail: str, layout: str) -> None:
        """Build the message.

        Args:
            root: The root that was searched.
            detail: What is missing.
            layout: The expected layout (a small tree).
        """
        msg = f'Dataset not found in root={str(root)!r}: {detail}\nExpected layout:\n{layout}'
        FileNotFoundError.__init__(self, msg)


class DatasetLayoutError(DataError):
    """Files exist but do not follow the expected layout or content (raised at construction time)."""

    def __init__(self, path: PathLike, problem: str, layout: str | None = None) -> None:
        """Build the message.

        Args:
            path: The offending file or folder.
            problem: What is wrong with it.
            layout: Optional expected layout appended to the message.
        """
        msg = f'{path}: {problem}'
        if layout:
            msg += f'\nExpected layout:\n{layout}'
        super().__init__(msg)
        self.path = Path(path)


def numeric_key(path: PathLike) -> tuple[int, str]:
    """Sort key using the last integer in the file stem (``image_10`` sorts after ``image_9``).

    Args:
        path: A file path.

    Returns:
        ``(number, name)``; files without a number sort first by name.
    """
    name = Path(path).stem
    nums = re.findall(r'\d+', name)
    return (int(nums[-1]) if nums else -1, name)


def verify_png(path: PathLike, chunk_bytes: int = 1 << 20) -> None:
    """Check that a PNG file is complete: signature, every chunk's CRC, and a final IEND chunk.

    Streams the file (memory does not grow with the file size) without decoding pixels.

    Args:
        path: The PNG file.
        chunk_bytes: Read size used when skipping over large chunks.

    Raises:
        DatasetLayoutError: If the file is not a PNG, is truncated or is corrupt.
    """
    with open(path, 'rb') as f:
        if f.read(8) != _PNG_SIGNATURE:
            raise DatasetLayoutError(path, 'not a PNG file (bad signature) or unreadable')
        while True:
            header = f.read(8)
            if len(header) < 8:
                raise DatasetLayoutError(path, 'truncated PNG (no IEND chunk)')
            length, ctype = struct.unpack('>I4s', header)
            crc = zlib.crc32(ctype)
            remaining = length
            while remaining:
                block = f.read(min(remaining, chunk_bytes))
                if not block:
                    raise DatasetLayoutError(path, f'truncated PNG (chunk {ctype!r} cut short)')
                crc = zlib.crc32(block, crc)
                remaining -= len(block)
            stored = f.read(4)
            if len(stored) < 4:
                raise DatasetLayoutError(path, 'truncated PNG (missing CRC)')
            if struct.unpack('>I', stored)[0] != crc & 0xFFFFFFFF:
                raise DatasetLayoutError(path, f'corrupt PNG (CRC mismatch in chunk {ctype!r})')
            if ctype == b'IEND':
                return


def check_finite(array: np.ndarray, path: PathLike, policy: str = 'fill', fill_value: float = 0.0) -> np.ndarray:
    """Handle NaN / inf values in a float array.

    Args:
        array: The array (modified in place when filling).
        path: The file it came from (named in the warning or error).
        policy: ``'fill'`` replaces non-finite values by ``fill_value`` and warns; ``'error'`` raises.
        fill_value: Replacement value.

    Returns:
        The array with only finite values.

    Raises:
        DatasetLayoutError: If ``policy == 'error'`` and the array holds NaN or inf.
    """
    if not np.issubdtype(array.dtype, np.floating):
        return array
    bad = ~np.isfinite(array)
    if bad.any():
        n = int(bad.sum())
        if policy == 'error':
            raise DatasetLayoutError(path, f'{n} NaN/inf values (nan_policy="error")')
        warnings.warn(f'{path}: {n} NaN/inf values replaced by {fill_value}', RuntimeWarning, stacklevel=2)
        array[bad] = fill_value
    return array


def read_h5(
    path: PathLike, keys: Sequence[str], shape_only: Sequence[str] = (), layout: str | None = None
) -> dict[str, Any]:
    """Read datasets of an HDF5 file (or only their shapes), with errors that name the file.

    Args:
        path: The ``.h5`` file.
        keys: Dataset names that must exist.
        shape_only: Those of ``keys`` whose shape is returned instead of their values (nothing is decoded).
        layout: Expected layout appended to a missing-key error.

    Returns:
        ``{key: np.ndarray}`` (``{key: shape tuple}`` for the keys in ``shape_only``).

    Raises:
        DatasetLayoutError: If the file is unreadable or truncated, or a key is missing.
    """
    import h5py

    try:
        with h5py.File(path, 'r') as f:
            for key in keys:
                if key not in f:
                    raise DatasetLayoutError(path, f'no dataset {key!r} (keys: {list(f.keys())})', layout)
            return {k: tuple(f[k].shape) if k in shape_only else np.asarray(f[k][()]) for k in keys}
    except DatasetLayoutError:
        raise
    except Exception as err:
        raise DatasetLayoutError(path, f'unreadable or truncated HDF5 file ({err})') from err


# ---------------------------------------------------------------------------------------------- label encodings
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


def open_raster(path: PathLike) -> Any:
    """Open a raster with rasterio, silencing ``NotGeoreferencedWarning`` (PNG files carry no georeference).

    Args:
        path: The raster file.

    Returns:
        An open ``rasterio.DatasetReader`` (close it, or use it as a context manager).
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter('ignore', NotGeoreferencedWarning)
        return rasterio.open(path)


def raster_shape(path: PathLike) -> tuple[int, int, int]:
    """Read ``(height, width, count)`` from a raster header (PNG, TIFF, ...) without decoding pixels.

    Args:
        path: The raster file.

    Returns:
        ``(height, width, band count)``.

    Raises:
        DatasetLayoutError: If the file cannot be opened.
    """
    try:
        with open_raster(path) as src:
            return src.height, src.width, src.count
    except Exception as err:  # rasterio raises RasterioIOError, but keep the message uniform
        raise DatasetLayoutError(path, f'unreadable raster ({err})') from err


def read_raster_window(
    src: Any, row: int, col: int, height: int, width: int, bands: Sequence[int] | None = None, fill: float = 0
) -> np.ndarray:
    """Read a window from an open rasterio dataset, padding where it extends past the raster edge.

    Args:
        src: An open ``rasterio`` dataset.
        row: Window row offset (may be >= 0 only).
        col: Window column offset.
        height: Window height.
        width: Window width.
        bands: 1-based band indexes (default: all).
        fill: Pad value outside the raster.

    Returns:
        Array of shape ``(C, height, width)`` in the raster's dtype.
    """
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    bands = list(bands) if bands is not None else list(range(1, src.count + 1))
    h = max(0, min(height, src.height - row))
    w = max(0, min(width, src.width - col))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', NotGeoreferencedWarning)
        data = src.read(bands, window=Window(col, row, w, h))
    if (h, w) != (height, width):
        out = np.full((len(bands), height, width), fill, dtype=data.dtype)
        out[:, :h, :w] = data
        data = out
    return data


def cache_as_tiled_tiff(src_path: PathLike, dst_path: PathLike, bands: Sequence[int], block: int = 256) -> Path:
    """Convert a raster (e.g. a huge PNG) to a tiled, deflate-compressed GeoTIFF, streaming row strips.

    Memory stays bounded by one strip of ``block`` rows. The copy is skipped when ``dst_path`` exists and a
    ``.src`` sidecar records the same source size and mtime.

    Args:
        src_path: Source raster.
        dst_path: Output ``.tif`` path (parent folders are created).
        bands: 1-based bands of the source to copy.
        block: Tile edge of the output and strip height of the copy.

    Returns:
        ``dst_path`` as a Path.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    src_path, dst_path = Path(src_path), Path(dst_path)
    stat = src_path.stat()
    stamp = f'{src_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}'
    sidecar = dst_path.with_suffix('.src')
    if dst_path.exists() and sidecar.exists() and sidecar.read_text() == stamp:
        return dst_path
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst_path.with_suffix('.tmp.tif')
    env = {} if 'GDAL_CACHEMAX' in os.environ else {'GDAL_CACHEMAX': 64 * 2**20}  # bounded block cache
    with warnings.catch_warnings(), rasterio.Env(**env):
        warnings.simplefilter('ignore', NotGeoreferencedWarning)
        with open_raster(src_path) as src:
            bands = [b for b in bands if b <= src.count]
            profile = {'driver': 'GTiff', 'height': src.height, 'width': src.width, 'count': len(bands),
                       'dtype': src.dtypes[0], 'tiled': True, 'blockxsize': block, 'blockysize': block,
                       'compress': 'deflate', 'zlevel': 1}  # fmt: skip
            with rasterio.open(tmp, 'w', **profile) as dst:
                for row in range(0, src.height, block):
                    h = min(block, src.height - row)
                    window = Window(0, row, src.width, h)
                    dst.write(src.read(bands, window=window), window=window)
    os.replace(tmp, dst_path)
    sidecar.write_text(stamp)
    return dst_path


def pad_to(tensor: Tensor, height: int, width: int, value: float = 0) -> Tensor:
    """Pad the last two dims of a tensor at the bottom/right to at least ``height x width``.

    Args:
        tensor: Tensor ``(..., H, W)``.
        height: Target height.
        width: Target width.
        value: Pad value.

    Returns:
        Tensor ``(..., max(H, height), max(W, width))``.
    """
    ph, pw = max(0, height - tensor.shape[-2]), max(0, width - tensor.shape[-1])
    if ph == 0 and pw == 0:
        return tensor
    return torch.nn.functional.pad(tensor, (0, pw, 0, ph), value=value)


def tile_source_dict(
    name: str, height: int, width: int, window: tuple[int, int, int] | None = None, tiles: int = 1
) -> dict[str, Any]:
    """Where a served tile comes from (a dataset's ``tile_source(index)``), for writers of predictions.

    Args:
        name: the source file's name without extension (``df001``): outputs are named after it.
        height: the source's height in pixels.
        width: the source's width in pixels.
        window: ``(row, col, size)`` of the tile in the source (bottom/right parts past the source's edge are
            padding), or ``None`` when the tile is the whole source resized to the tile size.
        tiles: how many tiles the source gives (its prediction is complete when all were predicted).

    Returns:
        ``{'name', 'height', 'width', 'window', 'tiles'}``.
    """
    return {'name': str(name), 'height': int(height), 'width': int(width),
            'window': None if window is None else tuple(int(v) for v in window), 'tiles': int(tiles)}  # fmt: skip


class RGBPlotMixin:
    """``plot(sample)`` for datasets whose first three image channels are R, G, B (Bijie, GVLM, reference tiles)."""

    def plot(self, sample: dict[str, Tensor], show_titles: bool = True, suptitle: str | None = None) -> Any:
        """Plot a sample (image, mask and ``prediction`` when present).

        Args:
            sample: A sample as returned by ``__getitem__`` (``image`` needs at least the 3 RGB channels first;
                0-255 values are scaled, others percentile-stretched).
            show_titles: Add titles.
            suptitle: Figure title.

        Returns:
            A matplotlib Figure.

        Raises:
            RGBBandsMissingError: If the image has fewer than 3 channels.
        """
        from torchgeo.datasets import RGBBandsMissingError

        from ..visualize import percentile_stretch, plot_segmentation

        image = sample['image']
        if image.shape[0] < 3:
            raise RGBBandsMissingError()
        rgb = image[:3].permute(1, 2, 0).cpu().numpy()
        rgb = np.clip(rgb / 255.0, 0, 1) if rgb.max() > 1.5 else percentile_stretch(rgb)
        return plot_segmentation(rgb, sample.get('mask'), sample.get('prediction'), show_titles, suptitle)
