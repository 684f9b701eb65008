"""The inputs' headers checked before any pixel is read: scenes, band names, the grid's resolution, labels, DEM."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import CRS

from ...errors import ConfigError, DataError
from .files import RasterInfo, _resolution_in, inspect_raster, resolve_files
from .labels import RASTER_SUFFIXES, _crs_name, _units

__all__ = ['check_dems', 'check_images', 'check_labels', 'grid_resolution', 'name_bands']


def _shared(images: list[RasterInfo], attr: str, what: str, advice: str) -> Any:
    """The value of ``attr`` that every scene shares; a :class:`DataError` listing each scene's value otherwise."""
    values = {getattr(i, attr) for i in images}
    if len(values) > 1:
        listing = ', '.join(f'{Path(i.path).name}: {getattr(i, attr)}' for i in images)
        raise DataError(f'data.init_args.images: the scenes have different {what} ({listing}); {advice}')
    return values.pop()


def check_images(images: Any) -> tuple[list[str], list[RasterInfo], int, str]:
    """The scenes' files and headers; every scene holds the same number of bands of one data type.

    Args:
        images: a path, a glob, a folder or a list.

    Returns:
        ``(files, headers, band count, data type)``.

    Raises:
        MissingFileError: nothing matches.
        DataError: unreadable rasters, different band counts or data types.
    """
    files = resolve_files(images, 'images', 'raster')
    infos = [inspect_raster(p, 'images') for p in files]
    count = _shared(
        infos,
        'data_count',
        'band counts',
        'every scene must hold the same bands in the same '
        'order (split the scenes into separate runs, or select bands with gdal)',
    )
    dtype = _shared(
        infos,
        'dtype',
        'data types',
        'one normalization cannot fit them all: convert them to one type (and scale) first',
    )
    return files, infos, count, dtype


def name_bands(first: RasterInfo, count: int, band_names: Sequence[str] | None) -> tuple[tuple[str, ...], str]:
    """The imagery's band names and where they come from.

    Args:
        first: the first scene's header.
        count: the number of bands.
        band_names: names given in the config, or None.

    Returns:
        ``(names, source)``: the config's names; else the first scene's band descriptions; ``red, green, blue``
        for 3 bands; else ``band1 ... bandN``.

    Raises:
        ConfigError: the given names do not name each band once.
    """
    if band_names is not None:
        if len(band_names) != count or len(set(band_names)) != count:
            raise ConfigError(
                f'data.init_args.band_names: {list(band_names)} must name each of the {count} bands of the imagery once'
            )
        return tuple(str(b) for b in band_names), 'given in the config'
    if first.names and len(first.names) == count:
        return first.names, 'read from the first scene'
    if count == 3:
        return ('red', 'green', 'blue'), 'assumed RGB order (3 bands without descriptions; set band_names otherwise)'
    names = tuple(f'band{i + 1}' for i in range(count))
    return names, 'numbered (no band descriptions in the files; set band_names to name them)'


def grid_resolution(
    images: list[RasterInfo], crs: CRS, res: float | None, resampling: str
) -> tuple[tuple[float, float], list[str]]:
    """The grid's resolution, and the log lines saying which scenes are warped or resampled onto it.

    Args:
        images: the scenes' headers.
        crs: the grid's CRS.
        res: the resolution given in the config, or None (the finest of the scenes in ``crs``).
        resampling: the resampling named in the messages.

    Returns:
        ``((rx, ry), messages)``.

    Raises:
        ConfigError: ``res`` is not positive.
    """
    native = [_resolution_in(i, crs) for i in images]
    if res is not None:
        if float(res) <= 0:
            raise ConfigError(f'data.init_args.res must be positive, got {res}')
        grid_res = (float(res), float(res))
        res_source = 'given in the config'
    else:
        finest = min(min(r) for r in native)
        grid_res = (finest, finest)
        res_source = 'the finest of the scenes'
    messages: list[str] = []
    differ = [(i, r) for i, r in zip(images, native, strict=True) if not np.allclose(r, grid_res, rtol=1e-6)]
    other_crs = [i for i in images if i.crs != crs]
    if other_crs:
        messages.append(
            f'imagery: {len(other_crs)} scene(s) not in {_crs_name(crs)} are warped on the fly '
            f'({", ".join(f"{Path(i.path).name}: {_crs_name(i.crs)}" for i in other_crs[:5])})'
        )
    if differ:
        listing = ', '.join(f'{Path(i.path).name}: {r[0]:g} x {r[1]:g}' for i, r in differ[:5])
        messages.append(
            f'imagery: resolutions differ from the grid ({listing}); every scene is resampled to '
            f'{grid_res[0]:g} {_units(crs)} ({res_source}) with {resampling} resampling'
        )
    return grid_res, messages


def check_labels(labels: Any) -> tuple[list[str], bool, list[RasterInfo]]:
    """The label files: polygon files, or one-band label rasters (not both).

    Args:
        labels: a path, a glob, a folder or a list.

    Returns:
        ``(files, are rasters, raster headers (empty for polygon files))``.

    Raises:
        ConfigError: polygon files and rasters mixed.
        DataError: a label raster with more than one band.
    """
    files = resolve_files(labels, 'labels', 'any')
    kinds = {Path(p).suffix.lower() in RASTER_SUFFIXES for p in files}
    if len(kinds) > 1:
        raise ConfigError('data.init_args.labels: give either polygon files or label rasters, not both')
    are_raster = kinds.pop()
    rasters = [inspect_raster(p, 'labels') for p in files] if are_raster else []
    for r in rasters:
        if r.data_count != 1:
            raise DataError(
                f'data.init_args.labels: {r.path} has {r.data_count} bands; a label raster has one band '
                f'(0 = background, > 0 = landslide)'
            )
    return files, are_raster, rasters


def check_dems(dem: Any) -> tuple[list[str], list[RasterInfo]]:
    """The DEM files (none when ``dem`` is empty); each has one band.

    Raises:
        DataError: a DEM with more than one band.
    """
    files = resolve_files(dem, 'dem', 'raster') if dem else []
    infos = [inspect_raster(p, 'dem') for p in files]
    for d in infos:
        if d.data_count != 1:
            raise DataError(f'data.init_args.dem: {d.path} has {d.data_count} bands; expected a one-band DEM')
    return files, infos
