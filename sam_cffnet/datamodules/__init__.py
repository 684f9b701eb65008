"""LightningDataModules for landslide segmentation (torchgeo NonGeoDataModule style; no model dependency).

Batches after ``on_after_batch_transfer``: ``image`` float32 ``(B, C, T, T)`` normalized by the datamodule's
:class:`~sam_cffnet.preprocessing.Preprocessing`, ``mask`` int64 ``(B, T, T)`` in {0, 1} (absent for splits without
masks), ``dem`` float32 ``(B, K, T, T)`` with ``dem_mode='separate'``.
"""

from .base import EpochShuffleSampler, LandslideDataModule, SplitView, split_indices
from .bijie import BijieDataModule
from .demo import DemoBijieDataModule
from .gvlm import GVLMDataModule
from .inventory import InventoryDataModule
from .landslide4sense import Landslide4SenseDataModule
from .reference_tiles import ReferenceTilesDataModule

__all__ = [
    'BijieDataModule',
    'DemoBijieDataModule',
    'EpochShuffleSampler',
    'GVLMDataModule',
    'InventoryDataModule',
    'Landslide4SenseDataModule',
    'LandslideDataModule',
    'ReferenceTilesDataModule',
    'SplitView',
    'split_indices',
]
