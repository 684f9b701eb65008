"""Your own data: georeferenced scenes and a landslide inventory, read through torchgeo's GeoDataset stack.

One concept per module (the overview of the data flow is in :mod:`.inventory`):

* ``files.py``: resolving input files, raster headers (:class:`RasterInfo`), resolutions, valid-data footprints;
* ``labels.py``: reading and checking landslide polygons; CRS names and units for messages;
* ``rasters.py``: the torchgeo datasets on the grid (:class:`SceneRaster`, :class:`DemRaster`,
  :class:`TargetRaster`) and the sample transform (:class:`SampleFinisher`);
* ``grid.py``: the pixel grid (:class:`PixelGrid`) and :func:`window_sums`;
* ``inputs.py``: the header checks of the inputs (scenes, band names, the grid's resolution, labels, DEM);
* ``targets.py``: the steps that build the target rasters (usable area, landslide polygons, rasterized targets and
  per-cell counts);
* ``inventory.py``: :class:`LandslideInventory`: runs those checks and steps, builds the grid, caches the targets;
* ``splits.py``: spatial splits of the grid (:func:`block_split`, :func:`region_split`, :func:`leave_gap`) and
  their areas;
* ``samplers.py``: which tiles a split uses (:func:`grid_tiles`, on :func:`sam_cffnet.tiling.tile_starts`) and the
  training draw (:class:`BalancedTileSampler`);
* ``tiles.py``: the tiles of a split as a dataset (:class:`InventoryTiles`) and their band statistics;
* ``plotting.py``: the map of the splits (:func:`plot_splits`);
* ``_log.py``: the default log and warning functions.
"""

from __future__ import annotations

from .files import RasterInfo, inspect_raster, resolve_files, valid_footprint
from .grid import PixelGrid, window_sums
from .inventory import LandslideInventory
from .labels import RASTER_SUFFIXES, read_landslide_polygons
from .rasters import DemRaster, SampleFinisher, SceneRaster, TargetRaster
from .samplers import BalancedTileSampler, grid_tiles
from .splits import block_split, leave_gap, region_split
from .tiles import InventoryTiles

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
    'block_split',
    'grid_tiles',
    'inspect_raster',
    'leave_gap',
    'read_landslide_polygons',
    'region_split',
    'resolve_files',
    'valid_footprint',
    'window_sums',
]
