"""Fixtures for the scene-mapping tests: a tiny random SAM-CFFNet task, its checkpoint, generated rasters."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from sam_cffnet.datamodules import BijieDataModule
from sam_cffnet.models import build_model
from sam_cffnet.tasks.segmentation import SegmentationTask

CRS = 'EPSG:32648'  # projected (UTM 48N, Bijie)
TRANSFORM = Affine(2.0, 0.0, 500_000.0, 0.0, -2.0, 3_000_000.0)  # 2 m pixels


@pytest.fixture(autouse=True, scope='module')
def _one_thread() -> Iterator[None]:
    """One torch thread: the test machine is shared, oversubscribed threads make the tiny model 10x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='session')
def task() -> SegmentationTask:
    """Tiny random SAM-CFFNet with the Bijie datamodule's preprocessing (as a checkpoint would record it)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        t = SegmentationTask(build_model('sam_cffnet', variant='vit_tiny', input_size=None))
    t.preprocessing = BijieDataModule(root='unused', tile_size=64).preprocessing
    return t.eval()


@pytest.fixture(scope='session')
def checkpoint(task: SegmentationTask, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint written the way Lightning does (state_dict, hyper_parameters, the task's own entry)."""
    ckpt: dict[str, Any] = {'state_dict': task.state_dict(), 'hyper_parameters': dict(task.hparams)}
    task.on_save_checkpoint(ckpt)
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.ckpt'
    torch.save(ckpt, path)
    return path


def write_geotiff(
    path: Path, data: np.ndarray, nodata: float | None = None, crs: str | None = CRS, transform: Any = TRANSFORM
) -> Path:
    """Write ``data`` (C, H, W) as a GeoTIFF."""
    profile = {'driver': 'GTiff', 'height': data.shape[1], 'width': data.shape[2], 'count': data.shape[0],
               'dtype': data.dtype.name, 'crs': crs, 'transform': transform, 'nodata': nodata}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with rasterio.open(path, 'w', **profile) as dst:
            dst.write(data)
    return path


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB image (3, H, W) with values 1..255 (0 is left for nodata)."""
    return np.random.default_rng(seed).integers(1, 256, (3, height, width), dtype=np.uint8)
