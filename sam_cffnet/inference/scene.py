"""Whole-scene landslide mapping: streaming sliding-window prediction over rasters of any size.

:func:`map_scene` runs a trained model over a GeoTIFF (or a plain PNG/JPEG such as a GVLM scene) and writes a
Cloud-Optimized GeoTIFF with the input's CRS, transform and size (band 1: landslide probability as uint8, band 2:
binary mask; 255 = nodata), and optionally polygons (GeoJSON or GeoPackage) in the input CRS.

How it works:

* windows: ``tile_size`` squares every ``tile_size - overlap`` pixels, the last one snapped to the edge
  (:func:`sam_cffnet.datasets.utils.tile_starts`, the same rule as GVLM's training tiles); scenes smaller than a
  tile are padded (padding is nodata);
* input: the bands and normalization recorded in the checkpoint (``checkpoint['sam_cffnet']['preprocessing']``,
  the datamodule's :class:`~sam_cffnet.preprocessing.Preprocessing`), applied exactly as in training;
* blending: each window's probabilities are weighted by :func:`window_weight` (1 in the middle, a cosine ramp over
  the overlap, > 0 everywhere) and the weighted sum is divided by the sum of weights, so tile borders show no seams;
* streaming: the scene is swept in row strips (one strip = one row of windows). Only the ``tile_size`` rows that
  are still open are held (a float64 sum, a float32 weight and a validity buffer, each ``tile_size x B`` where
  ``B <= block_width + 2 * tile_size`` columns); finished rows are written with windowed writes. Scenes wider than
  ``block_width`` are cut into column blocks processed one after another, the windows that straddle a block border
  being predicted once per block, so peak memory is bounded by ``tile_size x (block_width + 2 * tile_size)`` and
  the GDAL block cache (``gdal_cache_mb``), whatever the scene's size;
* nodata: a pixel is nodata when any used band is masked (nodata value, alpha band, internal mask) or not finite;
  it is fed to the model as 0 (after normalization), written as nodata and never counted as landslide. Windows that
  hold only nodata are not predicted;
* output: written to a hidden ``.partial`` file next to the output, converted with GDAL's COG driver (512 px tiles,
  DEFLATE, overviews) and renamed into place at the very end: an interrupted run leaves no complete-looking file.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..datasets.utils import PathLike, open_raster, tile_starts
from ..errors import ConfigError, DataError, MissingFileError, OutputExistsError
from ..preprocessing import Preprocessing
from ..thresholds import ThresholdRule

__all__ = [
    'PROBABILITY_SCALE',
    'InputRasterError',
    'load_mapping_model',
    'map_scene',
    'vectorize_mask',
    'window_inputs',
    'window_weight',
]

#: Probabilities are stored as ``round(p * PROBABILITY_SCALE)`` in uint8 (0..254); 255 is nodata.
PROBABILITY_SCALE = 254
NODATA = 255
_VECTOR_DRIVERS = {'.geojson': 'GeoJSON', '.json': 'GeoJSON', '.gpkg': 'GPKG'}


class InputRasterError(DataError):
    """The input scene cannot be mapped (not a raster, or bands that do not fit the model)."""


def window_weight(tile_size: int, overlap: int) -> np.ndarray:
    """Blending weight of a window: 1 in the middle, a cosine ramp over ``overlap`` pixels at each edge.

    The ramp ``sin^2(pi/2 * (i + 0.5) / overlap)`` is > 0 everywhere and complementary: on a regular grid with
    step ``tile_size - overlap`` the weights of two neighbours sum to 1 in their overlap.

    Args:
        tile_size: Window edge T.
        overlap: Overlap between neighbouring windows (``0 <= overlap < T``).

    Returns:
        ``(T, T)`` float32 weights in (0, 1].
    """
    if overlap <= 0:
        return np.ones((tile_size, tile_size), np.float32)
    i = np.arange(tile_size, dtype=np.float64)
    ramp = np.sin(np.pi / 2 * np.minimum((i + 0.5) / overlap, 1.0)) ** 2
    w1 = np.minimum(ramp, ramp[::-1])
    return np.outer(w1, w1).astype(np.float32)


# ---------------------------------------------------------------------------------------------- loading
def load_mapping_model(
    checkpoint: PathLike | None = None,
    reference_checkpoint: PathLike | None = None,
    sam_checkpoint: PathLike | None = None,
    map_location: str | torch.device = 'cpu',
) -> tuple[nn.Module, Preprocessing, ThresholdRule]:
    """Load a model for :func:`map_scene` with its input pipeline and decision rule.

    Args:
        checkpoint: A training checkpoint of this package (``.ckpt``, or an exported one).
        reference_checkpoint: Instead, one of the authors' ``{BJL,L4S,GVLM}_best.pth.tar`` (whole model; the
            authors' pipeline RGB / 255; their rule ``logit > 0.5``).
        sam_checkpoint: The SAM weights named at training time, when they moved (``checkpoint`` only).
        map_location: Device of the weights.

    Returns:
        ``(model_or_task, preprocessing, rule)`` with the model in eval mode.

    Raises:
        MissingFileError / CheckpointError / ConfigError: missing, unreadable or foreign checkpoint.
    """
    if (checkpoint is None) == (reference_checkpoint is None):
        raise ConfigError("give exactly one of checkpoint (ours) or reference_checkpoint (the authors' .pth.tar)")
    if reference_checkpoint is not None:
        from ..models.sam_cffnet import SAMCFFNet

        model = SAMCFFNet.from_reference_checkpoint(reference_checkpoint).to(map_location)
        return model.eval(), Preprocessing.reference(model.in_channels), ThresholdRule(0.5, on_logits=True)
    from ..tasks.segmentation import SegmentationTask

    overrides = {'sam_checkpoint': os.fspath(sam_checkpoint)} if sam_checkpoint is not None else {}
    task = SegmentationTask.from_checkpoint(checkpoint, map_location=map_location, **overrides)  # type: ignore[arg-type]
    if task.preprocessing is None:
        raise ConfigError(
            f'{checkpoint}: the checkpoint records no input preprocessing (it was not trained with a sam_cffnet '
            f'datamodule); call map_scene(..., preprocessing=Preprocessing(...)) with the bands and normalization'
        )
    return task.eval(), task.preprocessing, task.threshold_rule


# ---------------------------------------------------------------------------------------------- helpers
def _autocast(precision: str, device: torch.device) -> Any:
    p = str(precision).lower()
    if p in ('32', '32-true', 'fp32', 'float32'):
        return nullcontext()
    if p in ('bf16', 'bf16-mixed', 'bfloat16'):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if p in ('16', '16-mixed', 'fp16', 'float16'):
        if device.type == 'cpu':
            raise ConfigError("precision '16' needs a GPU; use 'bf16' or '32' on the CPU")
        return torch.autocast(device.type, dtype=torch.float16)
    raise ConfigError(f"precision must be '32', 'bf16' or '16', got {precision!r}")


def _column_blocks(width: int, block_width: int) -> list[tuple[int, int]]:
    n = max(1, math.ceil(width / block_width))
    edges = [round(i * width / n) for i in range(n + 1)]
    return [(edges[i], edges[i + 1]) for i in range(n)]


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _partial_path(path: Path) -> Path:
    return path.with_name(f'.{path.stem}.partial-{os.getpid()}{path.suffix}')


def _check_output(path: Path, overwrite: bool, what: str) -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(f'{path} exists; pass overwrite=True (--overwrite) to replace the {what}')
    if path.is_dir():
        raise IsADirectoryError(f'{path} is a folder, expected a file path for the {what}')


def window_inputs(
    preprocessing: Preprocessing,
    raw: np.ndarray,
    dem: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    device: str | torch.device = 'cpu',
) -> dict[str, Tensor]:
    """The model inputs of a batch of raw windows: the training pipeline itself, then nodata set to 0.

    Args:
        preprocessing: the checkpoint's input pipeline.
        raw: ``(B, C, T, T)`` raw values of the selected bands.
        dem: ``(B, K, T, T)`` raw DEM/slope values, or ``None``.
        valid: ``(B, T, T)`` 1 where the pixel has data, 0 for nodata (``None``: all valid).
        device: where the tensors go.

    Returns:
        ``image`` (and ``dem`` with ``dem_mode='separate'``) exactly as the datamodule delivers them in training.
    """
    batch = {'image': torch.from_numpy(raw).to(device)}
    if dem is not None:
        batch['dem'] = torch.from_numpy(dem).to(device)
    inputs = preprocessing(batch)
    if valid is not None:
        keep = torch.from_numpy(valid).to(device)[:, None]
        for key in ('image', 'dem'):
            if key in inputs:
                inputs[key] = inputs[key] * keep  # nodata is fed as 0 (after normalization)
    return inputs


class _Model:
    """Calls a task or a LandslideModel on normalized batches and returns probabilities."""

    def __init__(self, model: nn.Module, preprocessing: Preprocessing, device: torch.device, precision: str):
        self.net = model.model if hasattr(model, 'model') and hasattr(model, 'preprocessing') else model
        self.keys = tuple(getattr(self.net, 'input_keys', ('image',)))
        self.pre = preprocessing
        self.device = device
        self.precision = precision
        _autocast(precision, device)  # validate early

    @torch.inference_mode()
    def __call__(self, raw: np.ndarray, dem: np.ndarray | None, valid: np.ndarray) -> np.ndarray:
        """``raw`` (B, C, T, T), ``dem`` (B, K, T, T) or None, ``valid`` (B, T, T) -> probabilities (B, T, T)."""
        inputs = window_inputs(self.pre, raw, dem, valid, self.device)
        x = inputs['image']
        missing = [k for k in self.keys if k not in inputs]
        if missing:
            raise ConfigError(f'the model needs inputs {list(self.keys)}; the preprocessing provides {sorted(inputs)}')
        with _autocast(self.precision, self.device):
            logits = self.net(*[inputs[k] for k in self.keys])
        if logits.shape[-2:] != x.shape[-2:]:
            logits = torch.nn.functional.interpolate(logits.float(), size=x.shape[-2:], mode='bilinear')
        return torch.sigmoid(logits[:, 0].float()).cpu().numpy()


# ---------------------------------------------------------------------------------------------- mapping
def map_scene(
    model_or_task: nn.Module,
    input_path: PathLike,
    output_path: PathLike,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int = 8,
    precision: str = '32',
    preprocessing: Preprocessing | None = None,
    write_probability: bool = True,
    write_mask: bool = True,
    polygons_path: PathLike | None = None,
    min_area: float = 0.0,
    overwrite: bool = False,
    threshold: float | ThresholdRule | None = None,
    device: str | torch.device | None = None,
    block_width: int = 4096,
    gdal_cache_mb: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Map landslides over a whole scene with sliding windows; write a COG (and polygons).

    Output GeoTIFF (CRS, transform and size of the input; COG layout, uint8, nodata 255): band
    ``landslide_probability`` = ``round(p * 254)`` (GDAL scale 1/254 recorded) when ``write_probability``, then
    band ``landslide_mask`` (1 landslide, 0 background) when ``write_mask``.

    Memory: bounded by ``tile_size x (min(width, block_width) + 2 * tile_size)`` pixels of buffers (about 13 bytes
    each plus one strip of input bands), a batch of windows, the model and ``gdal_cache_mb``; it does not grow with
    the scene's height, nor with its width beyond ``block_width``. Polygons are held in memory (their number).

    Args:
        model_or_task: A :class:`~sam_cffnet.tasks.SegmentationTask` (its checkpoint's preprocessing and threshold
            are used) or a model taking ``model.input_keys`` (then ``preprocessing`` is required).
        input_path: The scene: GeoTIFF or any raster GDAL reads (PNG/JPEG without georeference: pixel coordinates).
        output_path: The GeoTIFF to write.
        tile_size: Window edge (default: the training tile size recorded in the preprocessing, else 256).
        overlap: Overlap between windows in pixels (default ``tile_size // 4``).
        batch_size: Windows per forward pass.
        precision: ``'32'``, ``'bf16'`` or ``'16'`` (GPU) autocast.
        preprocessing: Override of the input pipeline (:class:`~sam_cffnet.preprocessing.Preprocessing`).
        write_probability: Write the probability band.
        write_mask: Write the binary mask band.
        polygons_path: Also write landslide polygons (``.geojson`` / ``.json`` GeoJSON or ``.gpkg`` GeoPackage).
        min_area: Drop polygons smaller than this (CRS units squared; pixels when the input has no CRS).
        overwrite: Replace existing outputs.
        threshold: The mask rule: a :class:`~sam_cffnet.thresholds.ThresholdRule`, or a probability threshold
            (``p > threshold``); default: the checkpoint's rule.
        device: Torch device (default: CUDA if available).
        block_width: Widest column block processed at once (wider scenes are processed in column blocks).
        gdal_cache_mb: GDAL block cache for the run (MB).
        progress: Show a tqdm progress bar.

    Returns:
        Summary dict: paths, size, CRS, windows predicted / skipped, seconds, windows per second, landslide and
        valid pixel counts, number of polygons.

    Raises:
        FileNotFoundError: ``input_path`` does not exist.
        InputRasterError: Not a raster, or its bands do not match the model.
        FileExistsError: An output exists and ``overwrite`` is False.
    """
    import rasterio

    t_start = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    vec_path = Path(polygons_path) if polygons_path is not None else None
    if not (write_probability or write_mask):
        raise ConfigError('nothing to write: enable write_probability and/or write_mask')
    if not input_path.exists():
        raise MissingFileError(f'input scene not found: {input_path}')
    if output_path.resolve() == input_path.resolve():
        raise ConfigError(f'the output {output_path} is the input scene')
    _check_output(output_path, overwrite, 'output GeoTIFF')
    if vec_path is not None:
        if vec_path.suffix.lower() not in _VECTOR_DRIVERS:
            raise ConfigError(f'{vec_path}: polygons are written as .geojson, .json or .gpkg')
        _check_output(vec_path, overwrite, 'polygon file')

    pre = preprocessing or getattr(model_or_task, 'preprocessing', None)
    if pre is None:
        raise ConfigError('no preprocessing: pass a SegmentationTask loaded from a checkpoint, or preprocessing=')
    pre = Preprocessing.from_dict(pre)
    if threshold is None:
        rule = getattr(model_or_task, 'threshold_rule', None) or ThresholdRule()
    else:
        rule = threshold if isinstance(threshold, ThresholdRule) else ThresholdRule(float(threshold))
    threshold = rule.probability_threshold
    tile = int(tile_size or pre.tile_size or 256)
    pre = pre.with_tile_size(tile)  # windows are fed at their own size (the tile size the model was trained on)
    ov = tile // 4 if overlap is None else int(overlap)
    if tile <= 0 or not 0 <= ov < tile:
        raise ConfigError(f'need tile_size > 0 and 0 <= overlap < tile_size, got {tile} and {ov}')
    if batch_size <= 0 or block_width <= 0:
        raise ConfigError('batch_size and block_width must be positive')
    dev = torch.device(device) if device is not None else torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    model_in = getattr(getattr(model_or_task, 'model', model_or_task), 'in_channels', None)
    expected_in = pre.num_channels
    if isinstance(model_in, int) and model_in != int(expected_in):
        raise InputRasterError(
            f'the model takes {model_in} bands but the preprocessing delivers {expected_in}; wrong preprocessing?'
        )
    model_or_task.to(dev).eval()
    runner = _Model(model_or_task, pre, dev, precision)

    try:
        src = open_raster(input_path)
    except Exception as err:
        raise InputRasterError(
            f'{input_path}: not a readable raster (expected a GeoTIFF or a PNG/JPEG image): {str(err).splitlines()[0]}'
        ) from err
    tmp_paths: list[Path] = []
    with src, rasterio.Env(GDAL_CACHEMAX=int(gdal_cache_mb)), warnings.catch_warnings():
        from rasterio.enums import ColorInterp
        from rasterio.errors import NotGeoreferencedWarning

        warnings.simplefilter('ignore', NotGeoreferencedWarning)
        alpha = src.count > 1 and src.colorinterp[-1] == ColorInterp.alpha
        try:
            spec_idx, dem_idx = pre.raster_band_indexes(src.count, str(input_path), alpha_last=alpha)
        except DataError as err:
            raise InputRasterError(str(err)) from None
        height, width = src.height, src.width
        crs_text = str(src.crs) if src.crs is not None else None
        band_names = (['landslide_probability'] if write_probability else []) + (
            ['landslide_mask'] if write_mask else []
        )
        profile = {
            'driver': 'GTiff', 'height': height, 'width': width, 'count': len(band_names), 'dtype': 'uint8',
            'nodata': NODATA, 'crs': src.crs, 'transform': src.transform, 'tiled': True, 'blockxsize': 256,
            'blockysize': 256, 'compress': 'deflate', 'zlevel': 1, 'bigtiff': 'if_safer',
        }  # fmt: skip
        tmp_out = _partial_path(output_path)
        tmp_mask = _partial_path(output_path.with_name(output_path.stem + '_mask.tif'))
        try:
            output_path.parent.mkdir(parents=True, exist_ok=True)
            tmp_paths.append(tmp_out)
            with ExitStack() as stack:
                dst = stack.enter_context(rasterio.open(tmp_out, 'w', **profile))
                mask_dst = None
                if vec_path is not None and not write_mask:
                    tmp_paths.append(tmp_mask)
                    mask_dst = stack.enter_context(rasterio.open(tmp_mask, 'w', **{**profile, 'count': 1}))
                for i, name in enumerate(band_names, 1):
                    dst.set_band_description(i, name)
                if write_probability:
                    dst.scales = tuple(
                        1 / PROBABILITY_SCALE if n == 'landslide_probability' else 1.0 for n in band_names
                    )
                dst.update_tags(
                    source=input_path.name, threshold=f'{threshold:.6g}', tile_size=tile, overlap=ov,
                    probability_encoding=f'round(p * {PROBABILITY_SCALE}), 255 = nodata',
                    mask_encoding='1 = landslide, 0 = background, 255 = nodata', bands=','.join(pre.bands),
                    normalization=pre.normalization, rule=rule.describe(),
                )  # fmt: skip
                stats = _sweep(
                    src, spec_idx, dem_idx, runner, tile, ov, batch_size, block_width, threshold, dst,
                    write_probability, write_mask, mask_dst, progress, input_path.name,
                )  # fmt: skip
            n_polygons = None
            if vec_path is not None:
                mask_file, mask_band = (tmp_out, len(band_names)) if write_mask else (tmp_mask, 1)
                tmp_vec = _partial_path(vec_path)
                tmp_paths.append(tmp_vec)
                n_polygons = vectorize_mask(mask_file, tmp_vec, band=mask_band, min_area=min_area)
            tmp_cog = tmp_out.with_name(tmp_out.stem + '.cog.tif')
            tmp_paths.append(tmp_cog)
            _to_cog(tmp_out, tmp_cog, resampling='AVERAGE' if not write_mask else 'NEAREST')
            os.replace(tmp_cog, output_path)
            if vec_path is not None:
                os.replace(tmp_vec, vec_path)
        finally:
            for p in tmp_paths:
                p.unlink(missing_ok=True)
    seconds = time.perf_counter() - t_start
    return {
        'input': str(input_path),
        'output': str(output_path),
        'polygons': str(vec_path) if vec_path is not None else None,
        'height': height,
        'width': width,
        'crs': crs_text,
        'bands_used': {'spectral': spec_idx, 'dem': dem_idx},
        'output_bands': band_names,
        'tile_size': tile,
        'overlap': ov,
        'threshold': threshold,
        **stats,
        'seconds': seconds,
        'windows_per_second': stats['windows'] / max(stats['predict_seconds'], 1e-9),
        'landslide_fraction': stats['landslide_pixels'] / max(stats['valid_pixels'], 1),
        'num_polygons': n_polygons,
    }


def _sweep(
    src: Any,
    spec_idx: list[int],
    dem_idx: list[int],
    runner: _Model,
    tile: int,
    overlap: int,
    batch_size: int,
    block_width: int,
    threshold: float,
    dst: Any,
    write_probability: bool,
    write_mask: bool,
    mask_dst: Any,
    progress: bool,
    name: str,
) -> dict[str, Any]:
    """Strip-by-strip sweep (see the module docstring); returns counts."""
    from rasterio.windows import Window
    from tqdm.auto import tqdm

    height, width = src.height, src.width
    step = tile - overlap
    rows, cols_all = tile_starts(height, tile, step), tile_starts(width, tile, step)
    weight = window_weight(tile, overlap)
    weight64 = weight.astype(np.float64)
    blocks = _column_blocks(width, block_width)
    block_cols = [[c for c in cols_all if c < c1 and c + tile > c0] for c0, c1 in blocks]
    total = sum(len(c) for c in block_cols) * len(rows)
    indexes = spec_idx + dem_idx
    n_spec = len(spec_idx)
    counts = {'windows': 0, 'windows_skipped': 0, 'landslide_pixels': 0, 'valid_pixels': 0, 'predict_seconds': 0.0}
    bar = tqdm(total=total, unit='win', desc=f'mapping {name}', disable=not progress, dynamic_ncols=True)

    def flush(r0: int, n: int, c0: int, c1: int, a0: int, acc: np.ndarray, wsum: np.ndarray, valid: np.ndarray):
        n = min(n, height - r0)
        if n <= 0:
            return
        sl = (slice(0, n), slice(c0 - a0, c1 - a0))
        w = wsum[sl].astype(np.float64)
        nodata = ~valid[sl] | (w <= 0)
        prob = np.divide(acc[sl], w, out=np.zeros_like(w), where=w > 0)
        lands = (prob > threshold) & ~nodata
        counts['landslide_pixels'] += int(lands.sum())
        counts['valid_pixels'] += int((~nodata).sum())
        window = Window(c0, r0, c1 - c0, n)
        band = 1
        if write_probability:
            p8 = np.rint(prob * PROBABILITY_SCALE).astype(np.uint8)
            p8[nodata] = NODATA
            dst.write(p8, band, window=window)
            band += 1
        m8 = lands.astype(np.uint8)
        m8[nodata] = NODATA
        if write_mask:
            dst.write(m8, band, window=window)
        if mask_dst is not None:
            mask_dst.write(m8, 1, window=window)

    for (c0, c1), cols in zip(blocks, block_cols, strict=True):
        a0 = cols[0]
        bw = cols[-1] + tile - a0
        read_w = min(bw, width - a0)
        acc = np.zeros((tile, bw), np.float64)
        wsum = np.zeros((tile, bw), np.float32)
        valid = np.zeros((tile, bw), bool)
        prev: int | None = None
        for r in rows:
            read_h = min(tile, height - r)
            window = Window(a0, r, read_w, read_h)
            data = np.zeros((len(indexes), tile, bw), np.float32)
            data[:, :read_h, :read_w] = src.read(indexes, window=window, out_dtype='float32')
            strip_valid = np.zeros((tile, bw), bool)
            strip_valid[:read_h, :read_w] = (src.read_masks(indexes, window=window) > 0).all(axis=0)
            finite = np.isfinite(data).all(axis=0)
            strip_valid &= finite
            data[:, ~finite] = 0
            if prev is not None:
                d = r - prev
                flush(prev, d, c0, c1, a0, acc, wsum, valid)
                acc[: tile - d] = acc[d:]
                acc[tile - d :] = 0
                wsum[: tile - d] = wsum[d:]
                wsum[tile - d :] = 0
            valid = strip_valid
            todo = []
            for c in cols:
                if valid[:, c - a0 : c - a0 + tile].any():
                    todo.append(c)
                else:
                    counts['windows_skipped'] += 1
                    bar.update(1)
            for batch in _chunks(todo, batch_size):
                sel = [slice(c - a0, c - a0 + tile) for c in batch]
                raw = np.stack([data[:n_spec, :, s] for s in sel])
                dem = np.stack([data[n_spec:, :, s] for s in sel]) if dem_idx else None
                vmask = np.stack([valid[:, s] for s in sel]).astype(np.float32)
                t0 = time.perf_counter()
                prob = runner(raw, dem, vmask)
                counts['predict_seconds'] += time.perf_counter() - t0
                for p, s in zip(prob, sel, strict=True):
                    acc[:, s] += p.astype(np.float64) * weight64
                    wsum[:, s] += weight
                counts['windows'] += len(batch)
                bar.update(len(batch))
            prev = r
        assert prev is not None
        flush(prev, tile, c0, c1, a0, acc, wsum, valid)
    bar.close()
    counts['column_blocks'] = len(blocks)
    return counts


def _to_cog(src_path: Path, dst_path: Path, resampling: str) -> None:
    """Convert a tiled GeoTIFF to a Cloud-Optimized GeoTIFF (512 px tiles, DEFLATE, overviews)."""
    import rasterio.shutil

    rasterio.shutil.copy(
        src_path, dst_path, driver='COG', COMPRESS='DEFLATE', BLOCKSIZE=512, OVERVIEWS='AUTO',
        RESAMPLING=resampling, BIGTIFF='IF_SAFER',
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- polygons
def vectorize_mask(
    mask_path: PathLike, out_path: PathLike, band: int = 1, min_area: float = 0.0, block: int = 1024
) -> int:
    """Polygons of the landslide pixels (value 1) of a mask raster, block by block, merged across block borders.

    Each ``block x block`` window is vectorized in pixel coordinates (exact integers, 4-connectivity); polygons
    touching an inner block border are merged with ``shapely.unary_union`` at the end, then every polygon is put
    into the raster's CRS with its affine transform. Written with pyogrio (GeoJSON or GeoPackage, by extension of
    ``out_path`` unless it ends in ``.partial``) with fields ``id``, ``area`` (CRS units squared, pixels without a
    CRS) and ``area_px``.

    Args:
        mask_path: A uint8 raster with 1 = landslide.
        out_path: ``.geojson`` / ``.json`` / ``.gpkg`` file.
        band: Band of the mask.
        min_area: Minimum polygon area (CRS units squared; pixels when the raster has no CRS).
        block: Block edge of the vectorization.

    Returns:
        Number of polygons written.
    """
    import pyogrio
    import shapely
    import shapely.affinity
    from affine import Affine
    from rasterio.features import shapes
    from rasterio.windows import Window
    from shapely.geometry import shape

    out_path = Path(out_path)
    driver = _VECTOR_DRIVERS.get(out_path.suffix.lower())
    if driver is None:
        raise ConfigError(f'{out_path}: polygons are written as .geojson, .json or .gpkg')
    final: list[Any] = []
    pending: list[Any] = []
    with open_raster(mask_path) as src:
        height, width, transform, crs = src.height, src.width, src.transform, src.crs
        for r0 in range(0, height, block):
            for c0 in range(0, width, block):
                h, w = min(block, height - r0), min(block, width - c0)
                m = src.read(band, window=Window(c0, r0, w, h)) == 1
                if not m.any():
                    continue
                polys = shapes(m.astype(np.uint8), mask=m, connectivity=4, transform=Affine.translation(c0, r0))
                for geom, _ in polys:
                    poly = shape(geom)
                    x0, y0, x1, y1 = poly.bounds
                    inner = (c0 > 0 and x0 <= c0) or (r0 > 0 and y0 <= r0)
                    inner = inner or (c0 + w < width and x1 >= c0 + w) or (r0 + h < height and y1 >= r0 + h)
                    (pending if inner else final).append(poly)
    if pending:
        merged = shapely.unary_union(pending)
        final.extend(getattr(merged, 'geoms', [merged]))
    pixel_area = abs(transform.determinant) if crs is not None else 1.0
    coeffs = [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]
    keep = [p for p in final if p.area * pixel_area >= min_area and not p.is_empty]
    keep.sort(key=lambda p: (p.bounds[1], p.bounds[0]))
    geoms = [shapely.affinity.affine_transform(p, coeffs) for p in keep]
    if out_path.exists():
        out_path.unlink()
    fields = {
        'id': np.arange(1, len(keep) + 1, dtype=np.int64),
        'area': np.array([p.area * pixel_area for p in keep], dtype=np.float64),
        'area_px': np.array([p.area for p in keep], dtype=np.float64),
    }
    kwargs: dict[str, Any] = {'layer': 'landslides'} if driver == 'GPKG' else {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        pyogrio.raw.write(
            out_path, geometry=np.array(shapely.to_wkb(geoms) if geoms else [], dtype=object),
            field_data=list(fields.values()), fields=list(fields), geometry_type='Polygon',
            crs=crs.to_wkt() if crs is not None else None, driver=driver, **kwargs,
        )  # fmt: skip
    return len(keep)
