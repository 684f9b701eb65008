"""HDF5 reads with errors that name the file (Landslide4Sense, the reference tiles)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import DatasetLayoutError
from .files import PathLike

__all__ = ['read_h5']


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
