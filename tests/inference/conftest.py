"""Fixtures for the mapping tests: a tiny random SAM-CFFNet task, its checkpoint, generated rasters, a pixel model."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from torch import Tensor, nn

from sam_cffnet.datamodules import BijieDataModule
from sam_cffnet.models import build_model
from sam_cffnet.preprocessing import Preprocessing
from sam_cffnet.tasks.segmentation import SegmentationTask

CRS = 'EPSG:32648'  # projected (UTM 48N, Bijie)
TRANSFORM = Affine(2.0, 0.0, 500_000.0, 0.0, -2.0, 3_000_000.0)  # 2 m pixels
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='session')
def task() -> SegmentationTask:
    """Tiny random SAM-CFFNet with the Bijie datamodule's preprocessing (as a checkpoint would record it)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        t = SegmentationTask(build_model('sam_cffnet', variant='vit_tiny', input_size=None, decoder_channels=64))
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
    path: Path,
    data: np.ndarray,
    nodata: float | None = None,
    crs: str | None = CRS,
    transform: Any = TRANSFORM,
    **profile: Any,
) -> Path:
    """Write ``data`` (C, H, W) as a GeoTIFF."""
    profile = {'driver': 'GTiff', 'height': data.shape[1], 'width': data.shape[2], 'count': data.shape[0],
               'dtype': data.dtype.name, 'crs': crs, 'transform': transform, 'nodata': nodata, **profile}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with rasterio.open(path, 'w', **profile) as dst:
            dst.write(data)
    return path


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB image (3, H, W) with values 1..255 (0 is left for nodata)."""
    return np.random.default_rng(seed).integers(1, 256, (3, height, width), dtype=np.uint8)


def read(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Pixels and metadata of a raster."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with rasterio.open(path) as src:
            meta = {'crs': src.crs, 'transform': src.transform, 'shape': (src.height, src.width),
                    'nodata': src.nodata, 'layout': src.tags(ns='IMAGE_STRUCTURE').get('LAYOUT'),
                    'descriptions': src.descriptions, 'tiled': src.profile.get('tiled'),
                    'compress': src.profile.get('compress'), 'scales': src.scales, 'tags': src.tags()}  # fmt: skip
            return src.read(), meta


class PixelModel(nn.Module):
    """A per-pixel 'model' (logit = 6 * (mean of the bands - 0.5)): any correct tiling gives the same map.

    Args:
        fail_after: raise after this many forward passes (an interrupted run).
    """

    input_keys = ('image',)
    in_channels = 3

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.fail_after = fail_after

    def forward(self, image: Tensor) -> Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError('interrupted')
        return 6 * (image.mean(1, keepdim=True) - 0.5)


def rgb_preprocessing() -> Preprocessing:
    """The Bijie pipeline (RGB / 255)."""
    return BijieDataModule(root='unused').preprocessing


def run_cli(args: list[str], timeout: float = 300, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``python -m sam_cffnet <args>`` in a child process (one torch thread per process: reproducible, no
    oversubscription on a shared machine)."""
    import cli_process  # here, not at the top: worker scripts import this module without tests/ on their path

    env = cli_process.user_env(OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    if kwargs:  # process settings (preexec_fn): a fresh interpreter
        return subprocess.run([sys.executable, '-m', 'sam_cffnet', *args], capture_output=True, text=True, env=env,
                              cwd=REPO, timeout=timeout, **kwargs)  # fmt: skip
    return cli_process.run(args, cwd=REPO, env=env, timeout=timeout)
