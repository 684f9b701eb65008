"""Tiles and sampling: the tiles of a split as an indexed dataset, and the balanced training sampler."""

from __future__ import annotations

import math
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from torch import Tensor
from torch.utils.data import Dataset, Sampler
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
        """torchgeo query of tile ``index``."""
        r, c = self.positions[index]
        return self.grid.geoslice(int(r), int(c), self.tile_size, self.tile_size)

    def bounds(self, index: int) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of tile ``index`` in the grid's CRS."""
        r, c = self.positions[index]
        return self.grid.bounds(int(r), int(c), self.tile_size, self.tile_size)

    def __getitem__(self, index: int | tuple[slice, ...]) -> dict[str, Tensor]:
        """Tile ``index`` (or a torchgeo query): ``image`` float32 ``(C, T, T)`` raw values, ``mask`` int64
        ``(T, T)`` in {0, 1}, optional ``dem`` float32 ``(1, T, T)``."""
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


class BalancedTileSampler(Sampler[int]):
    """Training tiles drawn every epoch with a fixed share of landslide-free tiles.

    Epoch ``e`` draws ``length`` tile indices: ``round(length * negative_ratio)`` among the landslide-free tiles and
    the rest among tiles with landslides (each pool without replacement while it lasts), shuffled together. The draw
    depends only on ``(seed, epoch)`` (Lightning calls :meth:`set_epoch`), so a resumed run sees the same tiles.

    Args:
        positive: ``(N,)`` True for tiles holding landslide pixels.
        length: tiles per epoch.
        negative_ratio: share of landslide-free tiles in [0, 1] (all tiles come from the pool that exists when the
            other is empty).
        seed: seed of the draws.
        shuffle: False draws epoch 0's tiles every epoch.
    """

    def __init__(self, positive: np.ndarray, length: int, negative_ratio: float, seed: int, shuffle: bool = True):
        self.positive = np.asarray(positive, dtype=bool)
        self.length = int(length)
        self.negative_ratio = float(negative_ratio)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the draw of ``epoch``."""
        self.epoch = int(epoch)

    @staticmethod
    def _draw(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        if n <= 0 or len(pool) == 0:
            return np.zeros(0, dtype=np.int64)
        reps = math.ceil(n / len(pool))
        return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n]

    def counts(self) -> tuple[int, int]:
        """``(landslide tiles, landslide-free tiles)`` per epoch."""
        pos, neg = int(self.positive.sum()), int((~self.positive).sum())
        n_neg = round(self.length * self.negative_ratio) if pos else self.length
        n_neg = n_neg if neg else 0
        return self.length - n_neg, n_neg

    def __iter__(self) -> Any:
        rng = np.random.default_rng([self.seed, self.epoch if self.shuffle else 0])
        n_pos, n_neg = self.counts()
        chosen = np.concatenate([
            self._draw(np.flatnonzero(self.positive), n_pos, rng),
            self._draw(np.flatnonzero(~self.positive), n_neg, rng),
        ])  # fmt: skip
        return iter(rng.permutation(chosen).tolist())

    def __len__(self) -> int:
        return self.length
