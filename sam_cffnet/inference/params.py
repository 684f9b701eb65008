"""The parameters object of a mapping run, and what identifies a run (so that a rerun resumes only the same run).

:class:`MapParams` holds every setting of ``map`` except the model and the Trainer options (replacing long
positional argument lists); :func:`resolve_inputs` expands ``--input`` (files, globs); :func:`file_identity` and
:func:`model_identity` fingerprint the model a run used.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, MissingFileError
from ..preprocessing import Preprocessing
from ..thresholds import ThresholdRule

__all__ = ['MapParams', 'file_identity', 'model_identity', 'precision_name', 'resolve_inputs']

PathLike = str | os.PathLike[str]


@dataclass
class MapParams:
    r"""The settings of a mapping run (everything but the model and the Trainer options).

    Attributes:
        inputs: scenes: files (GeoTIFF, VRT, PNG/JPEG), or glob patterns.
        output: the output GeoTIFF of a single scene.
        output_dir: instead, a folder receiving ``<scene stem>.tif`` per scene.
        polygons: with ``output``: a ``.gpkg``/``.geojson`` path; with either: ``'gpkg'`` or ``'geojson'`` for one
            file per scene next to its GeoTIFF; ``None``: no polygons.
        min_area: drop polygons smaller than this (CRS units squared; pixels without a CRS).
        mosaic: also write a mosaic over all scenes' outputs (``.vrt``, or ``.tif`` for a COG).
        tile_size: window edge (default: the training tile size of the checkpoint).
        overlap: overlap between windows (default ``tile_size // 4``).
        batch_size: windows per forward pass.
        block_size: edge of the blocks that processes take (pixels, rounded to window steps); memory per process
            is about 9 bytes x ``block_size``\ :sup:`2` per block in flight.
        threshold: probability threshold of the mask (default: the checkpoint's rule).
        write_probability: write band ``landslide_probability``.
        write_mask: write band ``landslide_mask``.
        attention: SAM encoder attention kernel (``'sdpa'``, ``'reference'``; ``None``: the checkpoint's).
        compile: run the model through ``torch.compile``.
        num_workers: DataLoader processes reading the rasters, per device.
        gdal_cache_mb: GDAL block cache per process (MB).
        overwrite: replace existing outputs and another run's state.
        progress: show the progress bar.
        quicklook: also write ``<output stem>.quicklook.png`` per scene (a picture readable without a GIS).
    """

    inputs: Sequence[PathLike]
    output: PathLike | None = None
    output_dir: PathLike | None = None
    polygons: str | None = None
    min_area: float = 0.0
    mosaic: PathLike | None = None
    tile_size: int | None = None
    overlap: int | None = None
    batch_size: int = 8
    block_size: int = 3072
    threshold: float | None = None
    write_probability: bool = True
    write_mask: bool = True
    attention: str | None = None
    compile: bool = False
    num_workers: int = 2
    gdal_cache_mb: int = 256
    overwrite: bool = False
    progress: bool = True
    quicklook: bool = True

    def validate(self) -> None:
        """Raise :class:`~sam_cffnet.errors.ConfigError` for settings that cannot work."""
        if isinstance(self.inputs, str | os.PathLike):
            self.inputs = [self.inputs]
        if not self.inputs:
            raise ConfigError('no input scene given (--input)')
        if (self.output is None) == (self.output_dir is None):
            raise ConfigError('give exactly one of --output (one scene) or --output-dir (one file per scene)')
        if not (self.write_probability or self.write_mask):
            raise ConfigError('nothing to write: --no-probability and --no-mask together')
        for name in ('batch_size', 'block_size', 'gdal_cache_mb'):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f'{name} must be positive, got {getattr(self, name)}')
        if self.tile_size is not None and self.tile_size <= 0:
            raise ConfigError(f'tile_size must be positive, got {self.tile_size}')
        if self.num_workers < 0 or self.min_area < 0:
            raise ConfigError('num_workers and min_area must be >= 0')
        if self.attention not in (None, 'sdpa', 'reference'):
            raise ConfigError(f"attention must be 'sdpa', 'reference' or None, got {self.attention!r}")
        if self.mosaic is not None and Path(self.mosaic).suffix.lower() not in ('.vrt', '.tif', '.tiff'):
            raise ConfigError(f'--mosaic {self.mosaic}: a mosaic is a .vrt or a .tif (COG)')

    def settings(self) -> dict[str, Any]:
        """The settings that change the output (part of a run's identity)."""
        keys = ('polygons', 'min_area', 'tile_size', 'overlap', 'batch_size', 'block_size', 'threshold',
                'write_probability', 'write_mask', 'attention', 'compile')  # fmt: skip
        return {k: getattr(self, k) for k in keys}


def resolve_inputs(patterns: Sequence[PathLike]) -> list[Path]:
    """Files of ``--input``: paths and glob patterns, in order, each once.

    Raises:
        MissingFileError: a pattern matches nothing (a missing plain path is reported by :func:`inspect_scene`).
    """
    out: list[Path] = []
    for pattern in patterns:
        text = os.fspath(pattern)
        if glob.has_magic(text) and not Path(text).exists():
            matches = sorted(glob.glob(text))
            if not matches:
                raise MissingFileError(f'--input {text}: no file matches this pattern')
            out += [Path(m) for m in matches]
        else:
            out.append(Path(text))
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def file_identity(path: PathLike) -> dict[str, Any]:
    """Path, size and modification time of a file (what identifies a model file of a run)."""
    p = Path(path).resolve()
    st = p.stat()
    return {'path': str(p), 'size_bytes': st.st_size, 'mtime_ns': st.st_mtime_ns}


def model_identity(
    model: nn.Module, preprocessing: Preprocessing | None = None, rule: ThresholdRule | None = None
) -> dict[str, Any]:
    """Identity of an in-memory model (class, SHA-256 of its weights, pipeline, rule) for resuming runs."""
    net = getattr(model, 'model', model)
    digest = hashlib.sha256(type(net).__qualname__.encode())
    for key, value in net.state_dict().items():
        digest.update(key.encode())
        data = value.detach().cpu().contiguous().reshape(-1)
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b'')
    pre = preprocessing if preprocessing is not None else getattr(model, 'preprocessing', None)
    rule = rule if rule is not None else getattr(model, 'threshold_rule', None)
    return {
        'class': type(net).__qualname__,
        'sha256': digest.hexdigest(),
        'preprocessing': Preprocessing.from_dict(pre).to_dict() if pre is not None else None,
        'rule': rule.to_dict() if rule is not None else None,
    }


def precision_name(trainer: dict[str, Any]) -> str:
    """Lightning's name of the Trainer options' precision (``'bf16'`` -> ``'bf16-mixed'``)."""
    value = str(trainer.get('precision') or '32-true')
    return {'32': '32-true', 'bf16': 'bf16-mixed', '16': '16-mixed', '64': '64-true'}.get(value, value)
