"""The tiles of a split as an integer-indexed dataset over the inventory's torchgeo GeoDataset."""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from torch import Tensor
from torch.utils.data import Dataset
from torchgeo.datasets import GeoDataset

from .grid import PixelGrid


class InventoryTiles(Dataset[dict[str, Tensor]]):
    """The tiles of one split as an integer-indexed dataset over a torchgeo GeoDataset.

    ``tiles[i]`` reads tile ``i`` (``positions[i]`` = top-left pixel ``(row, col)`` on the grid) through the
    GeoDataset; ``tiles[geoslice]`` passes a torchgeo query straight through (so torchgeo samplers work too).

    Args:
        dataset: the inventory's IntersectionDataset (:meth:`LandslideInventory.dataset`).
        grid: the pixel grid.
        positions: ``(N, 2)`` top-left pixels.
        tile_size: tile edge in pixels.
        positive: ``(N,)`` True where the tile holds landslide pixels.
    """

    def __init__(
        self, dataset: GeoDataset, grid: PixelGrid, positions: np.ndarray, tile_size: int, positive: np.ndarray
    ) -> None:
        self.dataset = dataset
        self.grid = grid
        self.positions = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
        self.tile_size = int(tile_size)
        self.positive = np.asarray(positive, dtype=bool)

    def __len__(self) -> int:
        return len(self.positions)

    def geoslice(self, index: int) -> tuple[slice, slice]:
        """The torchgeo query of tile ``index``."""
        r, c = self.positions[index]
        return self.grid.geoslice(int(r), int(c), self.tile_size, self.tile_size)

    def bounds(self, index: int) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of tile ``index`` in the grid's CRS."""
        r, c = self.positions[index]
        return self.grid.bounds(int(r), int(c), self.tile_size, self.tile_size)

    def __getitem__(self, index: int | tuple[slice, ...]) -> dict[str, Tensor]:
        """Tile ``index`` (or a torchgeo query): ``image``, ``mask`` and optional ``dem``.

        ``image`` float32 ``(C, T, T)`` raw values, ``mask`` int64 ``(T, T)`` in {0, 1}, optional ``dem`` float32
        ``(1, T, T)``.
        """
        query = index if isinstance(index, tuple) else self.geoslice(int(index))
        return self.dataset[query]

    def to_geodataframe(self) -> gpd.GeoDataFrame:
        """One box per tile (``index``, ``positive``) in the grid's CRS: where each predicted tile lies."""
        boxes = [shapely.box(*self.bounds(i)) for i in range(len(self))]
        return gpd.GeoDataFrame(
            {'index': np.arange(len(self)), 'positive': self.positive}, geometry=boxes, crs=self.grid.crs
        )

    def plot(self, sample: dict[str, Tensor], suptitle: str | None = None) -> Any:
        """Image (first three bands, stretched), mask and prediction if present."""
        import matplotlib.pyplot as plt

        image = sample['image'][:3].float()
        lo, hi = image.amin(dim=(1, 2), keepdim=True), image.amax(dim=(1, 2), keepdim=True)
        image = ((image - lo) / (hi - lo).clamp_min(1e-6)).permute(1, 2, 0).numpy()
        panels = [('image', image)] + [(k, sample[k].numpy()) for k in ('mask', 'prediction') if k in sample]
        fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3))
        for ax, (title, data) in zip(np.atleast_1d(axes), panels, strict=True):
            ax.imshow(data, cmap=None if data.ndim == 3 else 'gray', vmin=0)
            ax.set_title(title)
            ax.axis('off')
        if suptitle:
            fig.suptitle(suptitle)
        return fig


def band_statistics(tiles: InventoryTiles) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-band mean and standard deviation of the raw values of every pixel of ``tiles``.

    Args:
        tiles: the tiles to read (each ``image`` ``(C, T, T)``).

    Returns:
        ``(mean (C,), std (C,), pixels per band)``; std 0 for a band that is constant.
    """
    total: np.ndarray | float = 0.0
    total_sq: np.ndarray | float = 0.0
    count = 0
    for i in range(len(tiles)):
        image = tiles[i]['image'].double().numpy()
        image = image.reshape(image.shape[0], -1)
        total = total + image.sum(1)
        total_sq = total_sq + (image**2).sum(1)
        count += image.shape[1]
    mean = np.asarray(total) / count
    return mean, np.sqrt(np.maximum(np.asarray(total_sq) / count - mean**2, 0)), count
