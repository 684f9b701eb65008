"""The pixel grid every scene is sampled on, and window sums over its per-cell counts."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS, Geod


@dataclass(frozen=True)
class PixelGrid:
    """The pixel grid every scene is sampled on: CRS, resolution, top-left corner, size, and the cell size.

    Rows grow southwards, columns eastwards; ``width``/``height`` are whole numbers of cells.
    """

    crs_wkt: str
    res: tuple[float, float]
    left: float
    top: float
    width: int
    height: int
    cell: int

    @property
    def crs(self) -> CRS:
        """The grid's CRS."""
        return CRS.from_wkt(self.crs_wkt)

    @property
    def shape_cells(self) -> tuple[int, int]:
        """``(rows, cols)`` of cells."""
        return self.height // self.cell, self.width // self.cell

    def bounds(self, row: int, col: int, height: int, width: int) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of a pixel window."""
        rx, ry = self.res
        xmin = self.left + col * rx
        ymax = self.top - row * ry
        return xmin, ymax - height * ry, xmin + width * rx, ymax

    def geoslice(self, row: int, col: int, height: int, width: int) -> tuple[slice, slice]:
        """The torchgeo query ``(x, y)`` of a pixel window at the grid's resolution."""
        xmin, ymin, xmax, ymax = self.bounds(row, col, height, width)
        return slice(xmin, xmax, self.res[0]), slice(ymin, ymax, self.res[1])

    def pixel_area_km2(self) -> np.ndarray:
        """Area of one pixel in km² for every row of cells (geodesic on geographic grids)."""
        rows = self.shape_cells[0]
        crs = self.crs
        rx, ry = self.res
        if crs.is_projected:
            factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
            return np.full(rows, rx * ry * factor**2 / 1e6)
        geod = Geod(ellps='WGS84')
        areas = np.empty(rows)
        to_lonlat = None if crs.is_geographic else gpd.GeoSeries(crs=crs)
        for r in range(rows):
            xmin, ymin, xmax, ymax = self.bounds(r * self.cell + self.cell // 2, 0, 1, 1)
            box = shapely.box(xmin, ymin, xmax, ymax)
            if to_lonlat is not None:
                box = gpd.GeoSeries([box], crs=crs).to_crs(4326).iloc[0]
            areas[r] = abs(geod.geometry_area_perimeter(box)[0]) / 1e6
        return areas


def window_sums(cells: np.ndarray, k: int) -> np.ndarray:
    """Sums over every ``k`` x ``k`` window of a 2-D array (summed-area table).

    Args:
        cells: ``(R, C)`` numbers.
        k: window edge.

    Returns:
        ``(R - k + 1, C - k + 1)``: entry ``(r, c)`` = ``cells[r:r+k, c:c+k].sum()`` (empty if ``k`` is too big).
    """
    rows, cols = cells.shape
    if k > rows or k > cols:
        return np.zeros((0, 0), dtype=np.int64)
    table = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    table[1:, 1:] = cells.astype(np.int64).cumsum(0).cumsum(1)
    return table[k:, k:] - table[:-k, k:] - table[k:, :-k] + table[:-k, :-k]
