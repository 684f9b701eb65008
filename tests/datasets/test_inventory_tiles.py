"""The inventory's tiles come from the one tiling rule (``tiling.tile_starts``, ``edge='drop'``)."""

from __future__ import annotations

import numpy as np
import pytest

from sam_cffnet.datasets.inventory import grid_tiles, leave_gap
from sam_cffnet.errors import ConfigError
from sam_cffnet.tiling import tile_starts, tile_windows


def test_tile_starts_drop_keeps_whole_tiles_on_the_stride() -> None:
    assert tile_starts(100, 32, 32, edge='drop') == [0, 32, 64]
    assert tile_starts(100, 32, 16, edge='drop') == [0, 16, 32, 48, 64]
    assert tile_starts(32, 32, 8, edge='drop') == [0]
    assert tile_starts(20, 32, 32, edge='drop') == []
    assert tile_windows(40, 70, 32, edge='drop') == [(0, 0), (0, 32)]
    assert tile_starts(100, 32, 32) == [0, 32, 64, 68]  # the default still snaps the last tile to the edge
    with pytest.raises(ConfigError, match='edge'):
        tile_starts(100, 32, 32, edge='pad')  # type: ignore[arg-type]


@pytest.mark.parametrize('stride', [1, 2, 3])
def test_grid_tiles_match_brute_force(stride: int) -> None:
    rng = np.random.default_rng(stride)
    area = rng.random((11, 13)) < 0.8
    valid = rng.integers(0, 5, (11, 13))
    k, need = 3, 20
    expected = [
        (r, c)
        for r in range(0, 11 - k + 1, stride)
        for c in range(0, 13 - k + 1, stride)
        if area[r : r + k, c : c + k].all() and valid[r : r + k, c : c + k].sum() >= need
    ]
    assert [tuple(p) for p in grid_tiles(area, valid, k, stride, need).tolist()] == expected
    assert grid_tiles(area[:2], valid[:2], k, stride, need).shape == (0, 2)  # smaller than a tile: none


def test_leave_gap_removes_val_and_test_cells_next_to_other_splits() -> None:
    split = np.array([[0, 0, 1, 1, 2, 2]], np.int8)
    # val goes first; test then only keeps its distance from what is left of the others
    assert leave_gap(split.copy(), 1).tolist() == [[0, 0, -1, -1, 2, 2]]
    assert leave_gap(split.copy(), 0).tolist() == split.tolist()
