"""A map of the inventory's splits: train/val/test areas, the val/test tiles, landslides and areas without data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .grid import PixelGrid
from .splits import SPLITS
from .tiles import InventoryTiles

__all__ = ['plot_splits']


def plot_splits(
    grid: PixelGrid,
    split: np.ndarray,
    valid: np.ndarray,
    landslide: np.ndarray,
    tiles: Mapping[str, InventoryTiles],
    areas: Mapping[str, Mapping[str, float]],
    title: str,
) -> Any:
    """Draw the splits of the grid.

    Args:
        grid: the pixel grid.
        split: ``(R, C)`` int8 split cells (0 train, 1 val, 2 test, -1 left out).
        valid: ``(R, C)`` usable pixels per cell.
        landslide: ``(R, C)`` landslide pixels per cell.
        tiles: the tiles of each split (the boxes of ``val`` and ``test`` are drawn).
        areas: ``{split: {'area_km2': ...}}`` for the legend.
        title: the figure's title.

    Returns:
        A matplotlib figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    colors = np.array([[0.27, 0.51, 0.71], [0.95, 0.61, 0.07], [0.3, 0.69, 0.29]])
    rgb = np.ones((*split.shape, 3)) * 0.85
    for s in range(3):
        rgb[split == s] = colors[s]
    rgb[(split < 0) & (valid > 0)] = 0.6
    rgb[valid == 0] = 1.0
    share = np.clip(2.0 * landslide / grid.cell**2, 0, 1)[..., None]  # landslide share of each cell
    rgb = rgb * (1 - share) + np.array([0.6, 0.0, 0.0]) * share
    xmin, ymin, xmax, ymax = grid.bounds(0, 0, grid.height, grid.width)
    fig, ax = plt.subplots(figsize=(8, 8 * grid.height / max(grid.width, 1) + 0.8))
    ax.imshow(rgb, extent=(xmin, xmax, ymin, ymax), interpolation='nearest')
    for name in ('val', 'test'):
        these = tiles.get(name)
        if these is not None:
            for i in range(len(these)):
                x0, y0, x1, y1 = these.bounds(i)
                ax.add_patch(
                    Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=0.8, ec='k', ls='-' if name == 'val' else '--')
                )
    labels = [f'{n}: {areas.get(n, {}).get("area_km2", 0):.3f} km²' for n in SPLITS]
    handles = [Patch(color=colors[s], label=labels[s]) for s in range(3)]
    handles += [Patch(color=(0.6, 0, 0), label='landslides'), Patch(color=(0.6,) * 3, label='left out'),
                Patch(color=(1.0,) * 3, ec='k', label='no data')]  # fmt: skip
    ax.legend(handles=handles, loc='upper center', bbox_to_anchor=(0.5, -0.06), ncol=3, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.ticklabel_format(useOffset=False, style='plain')
    ax.tick_params(labelsize=7)
    return fig
