"""sam_cffnet: SAM-based landslide segmentation (SAM-CFFNet, TransLandSeg, HPCL-Net) with PyTorch Lightning.

Public API, imported on first use so that ``import sam_cffnet.datamodules`` pulls in no model code (and
``import sam_cffnet.models`` no Lightning): :class:`SAMCFFNet` (the model), :class:`SegmentationTask` (the
LightningModule), the datamodules (:class:`BijieDataModule`, :class:`Landslide4SenseDataModule`,
:class:`GVLMDataModule`, :class:`ReferenceTilesDataModule`), the input pipeline :class:`Preprocessing` and the
model registry (:func:`build_model`, :func:`list_models`).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = '0.2.0'

_LAZY = {
    'SAMCFFNet': 'sam_cffnet.models',
    'build_model': 'sam_cffnet.models',
    'list_models': 'sam_cffnet.models',
    'Preprocessing': 'sam_cffnet.preprocessing',
    'SegmentationTask': 'sam_cffnet.tasks',
    'BijieDataModule': 'sam_cffnet.datamodules',
    'Landslide4SenseDataModule': 'sam_cffnet.datamodules',
    'GVLMDataModule': 'sam_cffnet.datamodules',
    'ReferenceTilesDataModule': 'sam_cffnet.datamodules',
}

__all__ = ['__version__', *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
