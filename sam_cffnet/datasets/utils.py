"""Former home of the datasets' helpers, kept for code outside the package that imports from it.

The helpers live in modules named after what they hold: :mod:`.files` (``PathLike``, :func:`numeric_key`),
:mod:`.errors` (:class:`LayoutNotFoundError`, :class:`DatasetLayoutError`), :mod:`.checks` (PNG integrity, finite
values), :mod:`.h5` (HDF5 reads), :mod:`.labels` (:class:`LabelEncoding` and label rasters), :mod:`.rasters`
(raster headers and windows), :mod:`.samples` (:func:`pad_to`, :func:`tile_source_dict`) and :mod:`.plotting`
(:class:`RGBPlotMixin`). The package's own code imports from those modules.
"""

from __future__ import annotations

from .checks import check_finite, verify_png
from .errors import DatasetLayoutError, LayoutNotFoundError
from .files import PathLike, numeric_key
from .h5 import read_h5
from .labels import (
    LabelEncoding,
    LabelReader,
    grey_label,
    label_raster_layout,
    label_values,
    raster_label_values,
    raster_label_window,
)
from .plotting import RGBPlotMixin
from .rasters import cache_as_tiled_tiff, open_raster, raster_shape, read_raster_window
from .samples import pad_to, tile_source_dict

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
    'raster_label_window',
    'raster_shape',
    'read_h5',
    'read_raster_window',
    'tile_source_dict',
    'verify_png',
]
