"""sam_cffnet: SAM-based landslide segmentation (SAM-CFFNet, TransLandSeg, HPCL-Net) with PyTorch Lightning.

Public API: :class:`SAMCFFNet` (the model), :class:`SegmentationTask` (the LightningModule), the datamodules
(:class:`BijieDataModule`, :class:`Landslide4SenseDataModule`, :class:`GVLMDataModule`,
:class:`ReferenceTilesDataModule`) and the model registry (:func:`build_model`, :func:`list_models`).
The task and datamodules are imported on first use (they pull in Lightning and torchgeo).
"""

from __future__ import annotations

import importlib
from typing import Any

from .models import SAMCFFNet, build_model, list_models

__version__ = '0.1.0'

_LAZY = {
    'SegmentationTask': 'sam_cffnet.tasks',
    'BijieDataModule': 'sam_cffnet.datamodules',
    'Landslide4SenseDataModule': 'sam_cffnet.datamodules',
    'GVLMDataModule': 'sam_cffnet.datamodules',
    'ReferenceTilesDataModule': 'sam_cffnet.datamodules',
}

__all__ = ['SAMCFFNet', '__version__', 'build_model', 'list_models', *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
