"""Window planning and blending of whole-scene mapping: pure numpy, no file, no model, no Lightning.

A scene of ``H x W`` pixels is covered by square windows of ``tile`` pixels every ``step = tile - overlap`` pixels
(:func:`sam_cffnet.tiling.tile_starts`, the last window snapped to the edge: the rule of GVLM's training tiles).
The windows' probabilities are blended with :func:`window_weight` (1 in the middle, a cosine ramp over the overlap),
so tile borders show no seams::

    p(pixel) = sum_w weight_w(pixel) * p_w(pixel) / sum_w weight_w(pixel)     (over the windows w holding the pixel)

For streaming and for distributing the work over processes, the scene's output pixels are cut into **blocks**
(:class:`ScenePlan`): block edges fall on window starts, every ``n = block_size // step`` windows, so a block is a
rectangle of output pixels and its windows are all the windows that touch it (one row / column of windows at each
inner edge is predicted by both neighbours). A block needs nothing from another block, so:

* the blend of a pixel is the same sum, over the same windows, in the same (row-major) order, whichever process
  computes its block: a run on N processes writes the same raster, bit for bit, as a run on one;
* memory is bounded by one block (:class:`BlockBlender`: ``block_h x block_w`` float32 sums and weights), whatever
  the scene's size.

Windows are fed to the model in **chunks** of at most ``batch_size`` consecutive windows of one block
(:meth:`Block.chunks`), so what the model sees in a forward pass does not depend on the number of processes either.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from ..tiling import tile_starts

__all__ = [
    'NODATA',
    'PROBABILITY_SCALE',
    'Block',
    'BlockBlender',
    'BlockGrid',
    'BlockResult',
    'ScenePlan',
    'balanced_split',
    'encode_probability',
    'window_weight',
]

#: Probabilities are stored as ``round(p * PROBABILITY_SCALE)`` in uint8 (0..254); 255 is nodata.
PROBABILITY_SCALE = 254
#: The nodata value of both output bands.
NODATA = 255

Window = tuple[int, int]  # (row, col) of the window's top-left pixel in the scene


def window_weight(tile_size: int, overlap: int) -> np.ndarray:
    """Blending weight of a window: 1 in the middle, a cosine ramp over ``overlap`` pixels at each edge.

    The ramp ``sin^2(pi/2 * (i + 0.5) / overlap)`` is > 0 everywhere and complementary: on a regular grid with
    step ``tile_size - overlap`` the weights of two neighbours sum to 1 in their overlap.

    Args:
        tile_size: window edge T.
        overlap: overlap between neighbouring windows (``0 <= overlap < T``).

    Returns:
        ``(T, T)`` float32 weights in (0, 1].
    """
    if overlap <= 0:
        return np.ones((tile_size, tile_size), np.float32)
    i = np.arange(tile_size, dtype=np.float64)
    ramp = np.sin(np.pi / 2 * np.minimum((i + 0.5) / overlap, 1.0)) ** 2
    w1 = np.minimum(ramp, ramp[::-1])
    return np.outer(w1, w1).astype(np.float32)


def encode_probability(probability: np.ndarray, nodata: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 ``round(p * 254)``, 255 where ``nodata``.

    Args:
        probability: float array, any shape.
        nodata: bool array of the same shape.

    Returns:
        uint8 array of the same shape.
    """
    out = np.rint(probability * PROBABILITY_SCALE).astype(np.uint8)
    out[nodata] = NODATA
    return out


def _edges(starts: Sequence[int], per_block: int, length: int) -> list[int]:
    """Block edges along one axis: 0, then every ``per_block``-th window start, then ``length``."""
    return [0, *starts[per_block::per_block], length]


@dataclass(frozen=True)
class Block:
    """A rectangle of output pixels of one scene and the windows that touch it.

    A block holds its window rows and columns, not the windows themselves (the ``rows x cols`` windows are made on
    demand): planning a scene of any size costs a few hundred bytes per block in use, nothing per window.

    Attributes:
        scene: index of the scene in the run.
        row: block row in the scene's block grid.
        col: block column.
        y0: first output row (inclusive).
        y1: last output row (exclusive).
        x0: first output column.
        x1: last output column (exclusive).
        rows: row starts of the windows touching the block.
        cols: column starts of the windows touching the block.
    """

    scene: int
    row: int
    col: int
    y0: int
    y1: int
    x0: int
    x1: int
    rows: tuple[int, ...] = ()
    cols: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        """File-name stem of the block (``r0001_c0002``)."""
        return f'r{self.row:04d}_c{self.col:04d}'

    @property
    def window(self) -> list[int]:
        """``[y0, y1, x0, x1]``: the block's output pixels (recorded with its file in the state folder)."""
        return [self.y0, self.y1, self.x0, self.x1]

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the block's output pixels."""
        return self.y1 - self.y0, self.x1 - self.x0

    @property
    def num_windows(self) -> int:
        """Windows touching the block."""
        return len(self.rows) * len(self.cols)

    @property
    def windows(self) -> tuple[Window, ...]:
        """``(row, col)`` top-left pixels of the windows to predict, row-major."""
        return tuple((r, c) for r in self.rows for c in self.cols)

    def num_chunks(self, batch_size: int) -> int:
        """Forward passes of at most ``batch_size`` windows that the block takes."""
        return -(-self.num_windows // batch_size)

    def chunk(self, k: int, batch_size: int) -> tuple[Window, ...]:
        """Chunk ``k`` of :meth:`chunks`, made alone (windows ``k * batch_size ...`` in row-major order)."""
        n_cols = len(self.cols)
        lo, hi = k * batch_size, min((k + 1) * batch_size, self.num_windows)
        return tuple((self.rows[i // n_cols], self.cols[i % n_cols]) for i in range(lo, hi))

    def chunks(self, batch_size: int) -> list[tuple[Window, ...]]:
        """The windows in consecutive groups of at most ``batch_size`` (one forward pass each)."""
        w = self.windows
        return [w[i : i + batch_size] for i in range(0, len(w), batch_size)]


class BlockGrid(Sequence[Block]):
    """The blocks of one scene, row-major, made on demand (a sequence: ``len``, indexing, iteration).

    Args:
        plan: the scene's plan.
        scene: scene index recorded in each block.
    """

    def __init__(self, plan: ScenePlan, scene: int = 0) -> None:
        self.plan = plan
        self.scene = scene

    def __len__(self) -> int:
        rows, cols = self.plan.grid
        return rows * cols

    def __getitem__(self, index: int) -> Block:  # type: ignore[override]
        n = len(self)
        if isinstance(index, slice):
            raise TypeError('BlockGrid takes integer indexes')
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f'block {index} of {n}')
        cols = self.plan.grid[1]
        return self.plan.block(index // cols, index % cols, self.scene)

    def __iter__(self) -> Iterator[Block]:
        rows, cols = self.plan.grid
        for i in range(rows):
            for j in range(cols):
                yield self.plan.block(i, j, self.scene)


@dataclass(frozen=True)
class ScenePlan:
    """Windows and blocks of one scene.

    Attributes:
        height: scene height in pixels.
        width: scene width.
        tile: window edge.
        overlap: overlap between neighbouring windows.
        block_size: requested block edge in pixels (rounded to a whole number of window steps, at least one).
        rows: window row starts.
        cols: window column starts.
        row_edges: block edges along the rows (``0 ... height``).
        col_edges: block edges along the columns.
    """

    height: int
    width: int
    tile: int
    overlap: int
    block_size: int
    rows: tuple[int, ...] = field(init=False)
    cols: tuple[int, ...] = field(init=False)
    row_edges: tuple[int, ...] = field(init=False)
    col_edges: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f'empty scene: {self.height} x {self.width}')
        if self.tile <= 0 or not 0 <= self.overlap < self.tile:
            raise ValueError(f'need tile > 0 and 0 <= overlap < tile, got {self.tile} and {self.overlap}')
        if self.block_size <= 0:
            raise ValueError(f'block_size must be positive, got {self.block_size}')
        step = self.tile - self.overlap
        per_block = max(1, self.block_size // step)
        rows, cols = tile_starts(self.height, self.tile, step), tile_starts(self.width, self.tile, step)
        set_ = object.__setattr__
        set_(self, 'rows', tuple(rows))
        set_(self, 'cols', tuple(cols))
        set_(self, 'row_edges', tuple(_edges(rows, per_block, self.height)))
        set_(self, 'col_edges', tuple(_edges(cols, per_block, self.width)))

    @property
    def num_windows(self) -> int:
        """Windows covering the scene (each counted once)."""
        return len(self.rows) * len(self.cols)

    @property
    def grid(self) -> tuple[int, int]:
        """Block rows and columns."""
        return len(self.row_edges) - 1, len(self.col_edges) - 1

    def _touching(self, starts: Sequence[int], lo: int, hi: int) -> tuple[int, ...]:
        """Starts ``s`` with ``s < hi`` and ``s + tile > lo`` (the starts are sorted: two bisections)."""
        return tuple(starts[bisect.bisect_right(starts, lo - self.tile) : bisect.bisect_left(starts, hi)])

    def block(self, i: int, j: int, scene: int = 0) -> Block:
        """Block ``(i, j)`` of the grid, made alone (no other block is planned).

        Args:
            i: block row.
            j: block column.
            scene: scene index recorded in the block.
        """
        y0, y1 = self.row_edges[i], self.row_edges[i + 1]
        x0, x1 = self.col_edges[j], self.col_edges[j + 1]
        rows, cols = self._touching(self.rows, y0, y1), self._touching(self.cols, x0, x1)
        return Block(scene, i, j, y0, y1, x0, x1, rows, cols)

    def blocks(self, scene: int = 0) -> BlockGrid:
        """The blocks, row-major, as a lazy sequence; their pixels partition the scene.

        Args:
            scene: scene index recorded in each block.
        """
        return BlockGrid(self, scene)

    @property
    def num_predicted_windows(self) -> int:
        """Windows predicted over all blocks (windows on inner block edges count once per block)."""
        re_, ce = self.row_edges, self.col_edges
        per_row = sum(len(self._touching(self.rows, a, b)) for a, b in pairwise(re_))
        per_col = sum(len(self._touching(self.cols, a, b)) for a, b in pairwise(ce))
        return per_row * per_col

    def describe(self) -> str:
        """One line for logs."""
        br, bc = self.grid
        return (
            f'{self.height} x {self.width} px, {self.num_windows} windows of {self.tile} px (overlap '
            f'{self.overlap}), {br} x {bc} blocks of up to {math.ceil(self.height / br)} x '
            f'{math.ceil(self.width / bc)} px'
        )


@dataclass
class BlockResult:
    """The encoded output of one block.

    Attributes:
        probability: ``(h, w)`` uint8 ``round(p * 254)``, 255 = nodata.
        mask: ``(h, w)`` uint8, 1 = landslide, 0 = background, 255 = nodata.
        valid_pixels: pixels with data.
        landslide_pixels: pixels classified landslide.
    """

    probability: np.ndarray
    mask: np.ndarray
    valid_pixels: int
    landslide_pixels: int


class BlockBlender:
    """Accumulates the weighted window probabilities of one block; memory ``9 x block pixels`` bytes.

    Args:
        block: the block.
        tile: window edge.
        overlap: overlap between windows (sets the blending ramp).
    """

    def __init__(self, block: Block, tile: int, overlap: int) -> None:
        self.block = block
        self.tile = tile
        self.weight = window_weight(tile, overlap)
        h, w = block.shape
        self.acc = np.zeros((h, w), np.float32)
        self.wsum = np.zeros((h, w), np.float32)
        self.valid = np.zeros((h, w), bool)

    def _slices(self, y: int, x: int) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
        b, t = self.block, self.tile
        top, bottom = max(y, b.y0), min(y + t, b.y1)
        left, right = max(x, b.x0), min(x + t, b.x1)
        if top >= bottom or left >= right:
            return None
        dst = (slice(top - b.y0, bottom - b.y0), slice(left - b.x0, right - b.x0))
        src = (slice(top - y, bottom - y), slice(left - x, right - x))
        return dst, src

    def add(self, probability: np.ndarray, windows: Sequence[Window]) -> None:
        """Add windows' probabilities (call in row-major window order for reproducible sums).

        Args:
            probability: ``(n, T, T)`` float32 probabilities; NaN where the input pixel is nodata.
            windows: the ``n`` windows' ``(row, col)`` top-left pixels.
        """
        for p, (y, x) in zip(probability, windows, strict=True):
            sl = self._slices(y, x)
            if sl is None:
                continue
            dst, src = sl
            pw = p[src]
            ok = np.isfinite(pw)
            weight = np.where(ok, self.weight[src], np.float32(0))
            self.acc[dst] += np.where(ok, pw, np.float32(0)) * weight
            self.wsum[dst] += weight
            self.valid[dst] |= ok

    def result(self, threshold: float) -> BlockResult:
        """Blend and encode.

        Args:
            threshold: landslide where the blended probability is ``> threshold``.
        """
        nodata = ~self.valid | (self.wsum <= 0)
        prob = np.divide(self.acc, self.wsum, out=np.zeros_like(self.acc), where=~nodata)
        lands = (prob > threshold) & ~nodata
        mask = lands.astype(np.uint8)
        mask[nodata] = NODATA
        return BlockResult(encode_probability(prob, nodata), mask, int((~nodata).sum()), int(lands.sum()))


def balanced_split(costs: Sequence[int], parts: int) -> list[range]:
    """Cut a sequence of work items into ``parts`` contiguous runs of about equal total cost.

    Contiguous runs keep a process on neighbouring blocks (one scene, or whole scenes), which suits GDAL's block
    cache and lets scenes complete early.

    Args:
        costs: cost of each item (e.g. windows per block), in order.
        parts: number of runs (processes).

    Returns:
        ``parts`` ranges of item indexes (some empty when there are fewer items than parts), covering every item
        exactly once, in order.
    """
    if parts <= 0:
        raise ValueError(f'parts must be positive, got {parts}')
    total = float(sum(costs))
    bounds, acc, part = [0], 0.0, 1
    for i, cost in enumerate(costs):
        acc += cost
        while part < parts and acc >= total * part / parts:
            bounds.append(i + 1)
            part += 1
    bounds += [len(costs)] * (parts + 1 - len(bounds))
    return [range(bounds[k], bounds[k + 1]) for k in range(parts)]
