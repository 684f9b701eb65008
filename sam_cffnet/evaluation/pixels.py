"""Pixel scores of a map against a reference, streamed window by window (memory flat in the scene size).

The pixel grid is the map's when it is a raster (else the reference raster's). Window by window, the grid raster is
read, the other side is read through a ``WarpedVRT`` onto the same grid (nearest neighbour) or rasterized from its
polygons (pixel centres), the area of interest is rasterized, and one 2 x 2 confusion matrix ``M[truth, map]`` is
accumulated over the pixels where both sides have data and that lie in the area of interest. The scores are
:func:`sam_cffnet.metrics.metrics_from_confusion`'s, with the names used in training (``landslide_iou``, ``miou``,
``macro_f1``, ...).

The same pass counts, for every object of either side, how many of its pixels have data on both sides, so that
objects lying mostly on nodata can be left out of the object scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..inference.raster import open_raster
from .inputs import Alignment, Layer

__all__ = ['PixelCounts', 'count_pixels', 'pixel_scores']


@dataclass
class PixelCounts:
    """What one pass over the grid counted.

    Attributes:
        confusion: ``(2, 2)`` int64 ``M[truth, map]`` (1 = landslide) over the evaluated pixels.
        pixel_area: area of one grid pixel in CRS units squared (1 without a CRS).
        reference_valid: per reference object, its pixels with data on both sides and in the area of interest.
        reference_total: per reference object, its pixels in the grid.
        mapped_valid: the same for the mapped objects.
        mapped_total: the same for the mapped objects.
    """

    confusion: np.ndarray
    pixel_area: float
    reference_valid: np.ndarray
    reference_total: np.ndarray
    mapped_valid: np.ndarray
    mapped_total: np.ndarray


def _ids(geoms: Sequence[Any], tree: Any, bounds: tuple[float, ...], shape: tuple[int, int], transform: Any) -> Any:
    """Rasterize the objects touching a window: ``(h, w)`` int32, object index + 1, 0 = none."""
    import shapely
    from rasterio.features import rasterize

    hits = tree.query(shapely.box(*bounds)) if tree is not None else []
    if len(hits) == 0:
        return np.zeros(shape, np.int32)
    return rasterize(((geoms[i], int(i) + 1) for i in hits), out_shape=shape, transform=transform, fill=0,
                     dtype='int32')  # fmt: skip


def count_pixels(
    mapped: Layer,
    reference: Layer,
    alignment: Alignment,
    mapped_objects: Sequence[Any],
    reference_objects: Sequence[Any],
    block: int = 1024,
) -> PixelCounts:
    r"""Stream the grid window by window (see the module docstring).

    Args:
        mapped: the map layer.
        reference: the reference layer.
        alignment: from :func:`~.inputs.align` (``alignment.grid`` must be set).
        mapped_objects: mapped polygons in ``alignment.crs``.
        reference_objects: reference polygons in ``alignment.crs``.
        block: window edge in pixels (memory about 12 bytes x ``block``\ :sup:`2`).

    Returns:
        The counts.
    """
    import shapely
    from rasterio.enums import Resampling
    from rasterio.features import rasterize
    from rasterio.vrt import WarpedVRT
    from rasterio.windows import Window
    from rasterio.windows import bounds as window_bounds
    from rasterio.windows import transform as window_transform

    grid = alignment.grid
    assert grid is not None
    other = reference if grid is mapped else mapped
    trees = [shapely.STRtree(list(g)) if len(g) else None for g in (reference_objects, mapped_objects)]
    objects = [list(reference_objects), list(mapped_objects)]
    valid_counts = [np.zeros(len(g) + 1, np.int64) for g in objects]
    total_counts = [np.zeros(len(g) + 1, np.int64) for g in objects]
    cm = np.zeros(4, np.int64)
    with ExitStack() as stack:
        src = stack.enter_context(open_raster(grid.path))
        osrc = None
        if other.kind == 'raster':
            osrc = stack.enter_context(open_raster(other.path))
            if osrc.crs is not None and src.crs is not None:
                osrc = stack.enter_context(WarpedVRT(osrc, crs=src.crs, transform=src.transform, width=src.width,
                                                     height=src.height, resampling=Resampling.nearest))  # fmt: skip
        pixel_area = abs(src.transform.determinant) if src.crs is not None else 1.0
        for y in range(0, src.height, block):
            for x in range(0, src.width, block):
                win = Window(x, y, min(block, src.width - x), min(block, src.height - y))
                shape = (int(win.height), int(win.width))
                t = window_transform(win, src.transform)
                b = window_bounds(win, src.transform)
                b = (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))
                valid = src.read_masks(grid.band, window=win) > 0
                grid_label = grid.landslide(src.read(grid.band, window=win)) & valid
                if osrc is not None:
                    valid &= osrc.read_masks(other.band, window=win) > 0
                    other_label = other.landslide(osrc.read(other.band, window=win))
                else:
                    other_label = None
                if alignment.aoi is not None:
                    valid &= rasterize([(alignment.aoi, 1)], out_shape=shape, transform=t, fill=0, dtype='uint8') > 0
                ids = [_ids(objects[k], trees[k], b, shape, t) for k in range(2)]
                if other_label is None:  # the other side is polygons: its labels are its rasterized objects
                    other_label = ids[0 if other is reference else 1] > 0
                truth, pred = (other_label, grid_label) if grid is mapped else (grid_label, other_label)
                cm += np.bincount((truth[valid].astype(np.int64) * 2 + pred[valid]), minlength=4)
                for k in range(2):
                    valid_counts[k] += np.bincount(ids[k][valid], minlength=len(valid_counts[k]))
                    total_counts[k] += np.bincount(ids[k].ravel(), minlength=len(total_counts[k]))
    return PixelCounts(cm.reshape(2, 2), pixel_area, valid_counts[0][1:], total_counts[0][1:], valid_counts[1][1:],
                       total_counts[1][1:])  # fmt: skip


def pixel_scores(confusion: np.ndarray) -> dict[str, float]:
    """The training metrics (:func:`sam_cffnet.metrics.metrics_from_confusion`) of a ``(2, 2)`` confusion matrix."""
    import torch

    from ..metrics import metrics_from_confusion

    return {k: float(v) for k, v in metrics_from_confusion(torch.as_tensor(confusion)).items()}
