"""The torchgeo datasets on the grid: imagery, DEM and target rasters, and the sample transform."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pyproj import CRS
from rasterio.enums import Resampling
from torchgeo.datasets import RasterDataset

#: Target raster values.
NODATA, BACKGROUND, LANDSLIDE = 0, 1, 2


class _FixedBounds(RasterDataset):
    """A RasterDataset whose ``bounds`` are computed once, not on every query.

    torchgeo's ``bounds`` property scans the GeoDataFrame index each time ``__getitem__`` resolves a query (~30 % of
    a 256 px tile read here); our indexes never change after construction except through the ``crs``/``res``
    setters, which drop the cached value.
    """

    @property
    def bounds(self) -> tuple[slice, slice, slice]:
        """Bounding x, y and t slices of the index (cached)."""
        cached = self.__dict__.get('_bounds_cache')
        if cached is None:
            cached = self.__dict__['_bounds_cache'] = RasterDataset.bounds.fget(self)  # type: ignore[attr-defined]
        return cached

    @property
    def crs(self) -> CRS:
        """The dataset's CRS (torchgeo's)."""
        return RasterDataset.crs.fget(self)  # type: ignore[attr-defined]

    @crs.setter
    def crs(self, new_crs: CRS) -> None:
        self.__dict__.pop('_bounds_cache', None)
        RasterDataset.crs.fset(self, new_crs)  # type: ignore[attr-defined]

    @property
    def res(self) -> tuple[float, float]:
        """The dataset's resolution (torchgeo's)."""
        return RasterDataset.res.fget(self)  # type: ignore[attr-defined]

    @res.setter
    def res(self, new_res: float | tuple[float, float]) -> None:
        self.__dict__.pop('_bounds_cache', None)
        RasterDataset.res.fset(self, new_res)  # type: ignore[attr-defined]


class SceneRaster(_FixedBounds):
    """The imagery: GeoTIFF scenes warped on the fly to one CRS and resolution (torchgeo RasterDataset).

    Args:
        paths: the scene files.
        crs: the grid's CRS.
        res: the grid's resolution ``(x, y)`` in CRS units.
        all_bands: names of the bands in the files, in order.
        bands: the bands to read (default: all).
        resampling: GDAL resampling used when a scene is warped or resampled (name of ``rasterio.enums.Resampling``).
        cache: keep file handles open (torchgeo's ``cache``).
    """

    filename_glob = '*'

    def __init__(
        self,
        paths: Sequence[str],
        crs: CRS,
        res: tuple[float, float],
        all_bands: Sequence[str],
        bands: Sequence[str] | None = None,
        resampling: str = 'bilinear',
        cache: bool = True,
    ) -> None:
        self.all_bands = tuple(all_bands)
        self.resampling_name = resampling
        super().__init__(list(paths), crs=crs, res=res, bands=list(bands) if bands else None, cache=cache)

    @property
    def resampling(self) -> Resampling:
        """The configured resampling (torchgeo's default is bilinear for images)."""
        return Resampling[self.resampling_name]


class DemRaster(SceneRaster):
    """The DEM (first band), warped to the grid (bilinear by default); samples hold ``dem`` ``(1, T, T)``."""

    def __init__(
        self, paths: Sequence[str], crs: CRS, res: tuple[float, float], resampling: str = 'bilinear', cache: bool = True
    ) -> None:
        super().__init__(paths, crs, res, all_bands=('dem',), resampling=resampling, cache=cache)

    def __getitem__(self, query: Any) -> dict[str, Any]:
        """The torchgeo sample with ``image`` renamed ``dem``: float32 ``(1, T, T)`` elevations."""
        sample = super().__getitem__(query)
        sample['dem'] = sample.pop('image')
        return sample


class TargetRaster(_FixedBounds):
    """Rasters of labels on the grid (read with nearest resampling; samples hold ``mask`` ``(T, T)`` int64).

    The cached targets (0 nodata, 1 background, 2 landslide), or a user's label raster while the cache is built.
    """

    filename_glob = '*'
    is_image = False

    def __init__(self, paths: Sequence[str], crs: CRS, res: tuple[float, float], cache: bool = True) -> None:
        super().__init__(list(paths), crs=crs, res=res, cache=cache)


class SampleFinisher:
    """Turns an IntersectionDataset sample into the package's sample (a picklable transform).

    ``image`` float32 ``(C, T, T)``; ``mask`` int64 ``(T, T)`` = (target == landslide); ``dem`` float32
    ``(1, T, T)`` with DEM nodata pixels (only present in tiles allowed to hold some) set to the tile's valid mean.
    torchgeo's ``crs``/``bounds``/``transform`` entries are dropped (they differ between torchgeo versions and do
    not collate); :meth:`InventoryTiles.bounds` gives a tile's coordinates.
    """

    def __init__(self, dem_nodata: float | None = None) -> None:
        self.dem_nodata = dem_nodata

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Finish one sample.

        Args:
            sample: torchgeo's ``image`` ``(C, T, T)``, ``mask`` ``(T, T)`` target values, optional ``dem``.

        Returns:
            ``image`` float32 ``(C, T, T)``, ``mask`` int64 ``(T, T)`` in {0, 1}, optional ``dem`` float32
            ``(1, T, T)``.
        """
        out: dict[str, Any] = {'image': sample['image'].float(), 'mask': (sample['mask'] == LANDSLIDE).long()}
        if 'dem' in sample:
            dem = sample['dem'].float()
            bad = ~torch.isfinite(dem)
            if self.dem_nodata is not None:
                bad |= dem == self.dem_nodata
            if bad.any():
                fill = dem[~bad].mean() if (~bad).any() else torch.tensor(0.0)
                dem = torch.where(bad, fill, dem)
            out['dem'] = dem
        return out
