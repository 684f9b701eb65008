"""Shared helpers for the landslide datasets: errors, file checks, windowed reads, tiling and plotting samples.

Nothing here depends on a model. The tiling routine :func:`tile_starts` / :func:`tile_windows` is the single
place where scenes are cut into tiles (GVLM training tiles and whole-scene mapping use the same rule).
"""

from __future__ import annotations

import os
import re
import struct
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchgeo.datasets import DatasetNotFoundError

from ..errors import DataError, SAMCFFNetError

PathLike = str | os.PathLike[str]

__all__ = [
    'DatasetLayoutError',
    'LayoutNotFoundError',
    'PathLike',
    'RGBPlotMixin',
    'cache_as_tiled_tiff',
    'check_finite',
    'numeric_key',
    'open_raster',
    'pad_to',
    'raster_shape',
    'read_raster_window',
    'tile_starts',
    'tile_windows',
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


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles along one axis; the last tile is snapped to the edge (GVLM's ``start_points``).

    Args:
        length: Axis length in pixels.
        tile: Tile size.
        stride: Step between tiles (``stride == tile``: no overlap).

    Returns:
        Sorted unique start offsets. ``[0]`` when ``length <= tile`` (the tile is then padded).
    """
    if tile <= 0 or stride <= 0:
        raise ValueError(f'tile ({tile}) and stride ({stride}) must be positive')
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def tile_windows(height: int, width: int, tile: int, stride: int | None = None) -> list[tuple[int, int]]:
    """Row-major list of ``(row, col)`` tile offsets covering an ``height x width`` raster.

    Args:
        height: Raster height.
        width: Raster width.
        tile: Tile size.
        stride: Step (default ``tile``).

    Returns:
        List of ``(row_off, col_off)``.
    """
    stride = stride or tile
    return [(r, c) for r in tile_starts(height, tile, stride) for c in tile_starts(width, tile, stride)]


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
