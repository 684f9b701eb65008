"""Which tiles of the grid a split uses, and how training draws them (cf. torchgeo's ``samplers/single.py``).

:func:`grid_tiles` enumerates tile positions like torchgeo's ``GridGeoSampler``, on the one tiling rule of
:func:`sam_cffnet.tiling.tile_starts` (``edge='drop'``: every tile wholly inside the grid, its start a whole cell),
keeping the tiles that lie inside a split's area with enough usable pixels; :class:`BalancedTileSampler` draws the
training tiles of each epoch with a fixed share of landslide-free tiles.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from ...tiling import tile_starts
from .grid import window_sums

__all__ = ['BalancedTileSampler', 'grid_tiles', 'tiles_cover']


def grid_tiles(area: np.ndarray, valid: np.ndarray, tile: int, stride: int, need: int) -> np.ndarray:
    """Top-left cells of the tiles every ``stride`` cells that lie wholly in ``area`` with enough usable pixels.

    Args:
        area: ``(R, C)`` bool: the cells of the split.
        valid: ``(R, C)`` usable pixels per cell.
        tile: tile edge in cells.
        stride: step between tile starts in cells (1: every cell, ``tile``: the non-overlapping grid).
        need: least number of usable pixels in a tile.

    Returns:
        ``(N, 2)`` int64 ``(row, col)`` cells, row-major.
    """
    rows = np.asarray(tile_starts(area.shape[0], tile, stride, edge='drop'), np.int64)
    cols = np.asarray(tile_starts(area.shape[1], tile, stride, edge='drop'), np.int64)
    if not len(rows) or not len(cols):
        return np.zeros((0, 2), np.int64)
    at = np.ix_(rows, cols)
    inside = window_sums(area, tile)[at] == tile * tile
    enough = window_sums(valid, tile)[at] >= need
    r, c = np.nonzero(inside & enough)
    return np.stack([rows[r], cols[c]], 1)


def tiles_cover(positions: np.ndarray, shape: tuple[int, int], tile: int) -> np.ndarray:
    """The cells covered by tiles of ``tile`` cells at ``positions``.

    Args:
        positions: ``(N, 2)`` top-left cells.
        shape: ``(R, C)`` of the grid in cells.
        tile: tile edge in cells.

    Returns:
        ``(R, C)`` bool.
    """
    if not len(positions):
        return np.zeros(shape, bool)
    starts = np.zeros(shape, np.int64)
    starts[positions[:, 0], positions[:, 1]] = 1
    return window_sums(np.pad(starts, ((tile - 1, 0), (tile - 1, 0))), tile) > 0


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
