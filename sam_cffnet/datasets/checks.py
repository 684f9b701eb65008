"""Checks of file content: PNG integrity (signature, chunk CRCs, IEND) and finite values of float arrays."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np

from .errors import DatasetLayoutError
from .files import PathLike

__all__ = ['check_finite', 'verify_png']

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


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
