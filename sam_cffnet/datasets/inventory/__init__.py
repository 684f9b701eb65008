"""Your own data: georeferenced scenes and a landslide inventory, read through torchgeo's GeoDataset stack.

One concept per module (the overview of the data flow is in :mod:`.inventory`):

* ``files.py``: resolving input files, raster headers (:class:`RasterInfo`), resolutions, valid-data footprints;
* ``labels.py``: reading and checking landslide polygons; CRS names and units for messages;
* ``rasters.py``: the torchgeo datasets on the grid (:class:`SceneRaster`, :class:`DemRaster`,
  :class:`TargetRaster`) and the sample transform (:class:`SampleFinisher`);
* ``grid.py``: the pixel grid (:class:`PixelGrid`) and :func:`window_sums`;
* ``inventory.py``: :class:`LandslideInventory`: checks the inputs, builds the grid and the cached target rasters;
* ``tiles.py``: the tiles of a split (:class:`InventoryTiles`) and :class:`BalancedTileSampler`;
* ``_log.py``: the default log and warning functions.
"""

from __future__ import annotations

from .files import RasterInfo, inspect_raster, resolve_files, valid_footprint
from .grid import PixelGrid, window_sums
from .inventory import LandslideInventory
from .labels import RASTER_SUFFIXES, read_landslide_polygons
from .rasters import DemRaster, SampleFinisher, SceneRaster, TargetRaster
from .tiles import BalancedTileSampler, InventoryTiles

__all__ = [
    'RASTER_SUFFIXES',
    'BalancedTileSampler',
    'DemRaster',
    'InventoryTiles',
    'LandslideInventory',
    'PixelGrid',
    'RasterInfo',
    'SampleFinisher',
    'SceneRaster',
    'TargetRaster',
    'inspect_raster',
    'read_landslide_polygons',
    'resolve_files',
    'valid_footprint',
    'window_sums',
]
