"""Raster reads of the tiled datasets: opening without georeference warnings, headers, padded windows, copies."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetLayoutError
from .files import PathLike

__all__ = ['cache_as_tiled_tiff', 'open_raster', 'raster_shape', 'read_raster_window']


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
