"""torchgeo-style datasets for landslide segmentation (no dependency on the models).

Samples are dicts: ``image`` float32 ``(C, H, W)`` with raw (un-normalized) values, ``mask`` int64 ``(H, W)`` in
{0, 1} when the split has labels, and optionally ``dem`` float32 ``(K, H, W)``.
"""

from ..tiling import tile_starts, tile_windows
from .bijie import Bijie
from .demo import make_demo_bijie
from .errors import DatasetLayoutError, LayoutNotFoundError
from .gvlm import GVLM
from .inventory import InventoryTiles, LandslideInventory
from .landslide4sense import Landslide4Sense
from .reference_tiles import ReferenceTiles

__all__ = [
    'GVLM',
    'Bijie',
    'DatasetLayoutError',
    'InventoryTiles',
    'Landslide4Sense',
    'LandslideInventory',
    'LayoutNotFoundError',
    'ReferenceTiles',
    'make_demo_bijie',
    'tile_starts',
    'tile_windows',
]
