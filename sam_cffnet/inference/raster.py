"""Raster input and output of whole-scene mapping (rasterio/GDAL): scene headers, window reads, block files, VRTs, COGs.

* :func:`inspect_scene` reads a scene's header (size, bands, CRS, transform) without decoding pixels;
* :class:`WindowReader` reads the raw values and the validity of a group of windows (nodata value, alpha band,
  internal masks and non-finite values make a pixel nodata; outside the scene is nodata too); each process opens
  each file once (DataLoader workers open their own handles);
* :func:`write_block` writes one block's encoded output as a small GeoTIFF in the scene's pixel grid, read back and
  compared before it is renamed into place (so a full disk cannot leave a truncated block that looks done);
* :func:`write_vrt` describes a raster made of others (a scene from its blocks, a mosaic from scenes) and
  :func:`to_cog` turns it into a Cloud-Optimized GeoTIFF, streaming (GDAL's block cache bounds the memory).

Every write failure is raised as :class:`OutputWriteError` naming the file (and the full disk when that is why).
"""

from __future__ import annotations

import errno
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError, MissingFileError, SAMCFFNetError
from ..preprocessing import Preprocessing
from .windows import NODATA, Block

__all__ = [
    'InputRasterError',
    'OutputWriteError',
    'SceneInfo',
    'VRTBand',
    'VRTSource',
    'WindowReader',
    'check_scene_dtype',
    'inspect_scene',
    'open_raster',
    'read_tags',
    'scene_bands',
    'to_cog',
    'training_dtype',
    'write_block',
    'write_error',
    'write_vrt',
]

PathLike = str | os.PathLike[str]

#: Raster dtypes passed to the model unconverted (anything else is read as float32; uint16 as int32).
_KEEP_DTYPES = {'uint8', 'int8', 'int16', 'int32', 'float32'}


class InputRasterError(DataError):
    """The input scene cannot be mapped (not a raster, unreadable, or bands that do not fit the model)."""


class OutputWriteError(SAMCFFNetError, OSError):
    """An output could not be written (disk full, file too large, permissions); the run can be resumed."""


def _existing_folder(path: PathLike) -> Path:
    """The nearest existing folder holding ``path``."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _low_space(path: PathLike) -> bool:
    import shutil

    folder = _existing_folder(path)
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return False
    return usage.free < max(64 * 2**20, usage.total // 200)


def write_error(err: BaseException, path: PathLike) -> OutputWriteError:
    """An :class:`OutputWriteError` naming ``path`` and the cause.

    The cause: a read-only file system, a folder without write permission, a full disk.

    GDAL reports a failed write as ``Write failed`` after logging the cause, so the exception chain, the error
    numbers, the folder's permissions and the free space of the file system are all consulted (in that order: a
    read-only mount also shows no free space).
    """
    chain: list[BaseException] = []
    e: BaseException | None = err
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    texts = ' '.join(str(x) for x in chain).lower()
    codes = {getattr(x, 'errno', None) for x in chain}
    folder = _existing_folder(path)
    if errno.EROFS in codes or 'read-only file system' in texts or _read_only(folder):
        why = f'the folder {folder} is on a read-only file system'
    elif codes & {errno.EACCES, errno.EPERM} or 'permission denied' in texts or not os.access(folder, os.W_OK):
        why = f'permission denied: the folder {folder} is not writable by this user'
    elif errno.ENOSPC in codes or 'no space left' in texts or _low_space(path):
        why = 'no space left on the device (disk full)'
    else:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        if errno.EFBIG in codes or any(k in texts for k in ('file too large', 'write failed', 'write error', 'seek')):
            why = f'the write failed (disk full, or a file-size limit: ulimit -f): {why}'
    return OutputWriteError(f'{path}: cannot write: {why}')


def open_raster(path: PathLike) -> Any:
    """Open a raster with rasterio, silencing ``NotGeoreferencedWarning`` (PNG files carry no georeference)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter('ignore', NotGeoreferencedWarning)
        return rasterio.open(path)


@dataclass(frozen=True)
class SceneInfo:
    """Header of one input scene.

    Attributes:
        index: position of the scene in the run.
        path: absolute path.
        height: rows.
        width: columns.
        count: bands.
        dtypes: band data types.
        alpha: the last band is an alpha band.
        crs_wkt: the CRS as WKT, or ``None`` (a PNG/JPEG without georeference: pixel coordinates).
        crs_name: short CRS name (``EPSG:32648``), or ``None``.
        transform: affine coefficients ``(a, b, c, d, e, f)`` (pixel -> CRS).
        size_bytes: file size (identifies the input of a run, with ``mtime_ns``).
        mtime_ns: modification time.
    """

    index: int
    path: str
    height: int
    width: int
    count: int
    dtypes: tuple[str, ...]
    alpha: bool
    crs_wkt: str | None
    crs_name: str | None
    transform: tuple[float, float, float, float, float, float]
    size_bytes: int
    mtime_ns: int

    @property
    def name(self) -> str:
        """File name."""
        return Path(self.path).name

    @property
    def affine(self) -> Any:
        """The pixel -> CRS transform as an ``affine.Affine``."""
        from affine import Affine

        return Affine(*self.transform)

    @property
    def pixel_area(self) -> float:
        """Area of one pixel in CRS units squared (1 without a CRS: pixels)."""
        return abs(self.affine.determinant) if self.crs_wkt is not None else 1.0

    def square_metres_per_unit(self) -> float | None:
        """Square metres per squared CRS unit where the CRS is projected, else ``None``."""
        if self.crs_wkt is None:
            return None
        from rasterio.crs import CRS

        crs = CRS.from_wkt(self.crs_wkt)
        if not crs.is_projected:
            return None
        return float(crs.linear_units_factor[1]) ** 2

    def area_unit(self) -> str:
        """Unit of areas: ``'metre^2'`` (projected CRS), ``'<unit>^2'``, or ``'pixel^2'`` without a CRS."""
        if self.crs_wkt is None:
            return 'pixel^2'
        from rasterio.crs import CRS

        crs = CRS.from_wkt(self.crs_wkt)
        return f'{crs.linear_units if crs.is_projected else "degree"}^2'

    def identity(self) -> dict[str, Any]:
        """What identifies the input of a run (for resuming)."""
        return {'path': self.path, 'size_bytes': self.size_bytes, 'mtime_ns': self.mtime_ns,
                'shape': [self.count, self.height, self.width]}  # fmt: skip


def inspect_scene(path: PathLike, index: int = 0) -> SceneInfo:
    """Read a scene's header (no pixels).

    Raises:
        MissingFileError: the file does not exist.
        InputRasterError: GDAL cannot open it as a raster.
    """
    from rasterio.enums import ColorInterp

    p = Path(path)
    if not p.exists():
        raise MissingFileError(f'{p}: input scene not found (expected a GeoTIFF, VRT or PNG/JPEG raster)')
    try:
        with open_raster(p) as src:
            alpha = src.count > 1 and src.colorinterp[-1] == ColorInterp.alpha
            stat = p.stat()
            t = src.transform
            return SceneInfo(
                index=index, path=str(p.resolve()), height=src.height, width=src.width, count=src.count,
                dtypes=tuple(src.dtypes), alpha=alpha, crs_wkt=src.crs.to_wkt() if src.crs else None,
                crs_name=src.crs.to_string() if src.crs else None, transform=(t.a, t.b, t.c, t.d, t.e, t.f),
                size_bytes=stat.st_size, mtime_ns=stat.st_mtime_ns,
            )  # fmt: skip
    except SAMCFFNetError:
        raise
    except Exception as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputRasterError(
            f'{p}: not a readable raster (expected a GeoTIFF, VRT or PNG/JPEG image): {detail}'
        ) from err


def scene_bands(scene: SceneInfo, preprocessing: Preprocessing) -> tuple[list[int], list[int]]:
    """The 1-based bands of ``scene`` that feed the model: ``(spectral, dem)``.

    Raises:
        InputRasterError: the scene's bands fit neither the trained bands nor the dataset's full band list.
    """
    try:
        return preprocessing.raster_band_indexes(scene.count, scene.path, alpha_last=scene.alpha)
    except DataError as err:
        raise InputRasterError(str(err)) from None


#: The data type of the imagery each dataset of the package trains on (its files as downloaded).
DATASET_DTYPES = {'bijie': 'uint8', 'gvlm': 'uint8', 'reference_tiles': 'uint8', 'reference': 'uint8',
                  'landslide4sense': 'float'}  # fmt: skip


def training_dtype(preprocessing: Preprocessing) -> tuple[str, str] | None:
    """The data type of the imagery a pipeline was trained on, and how that is known; ``None`` where it is not.

    The rule, in order: (1) the dataset's files (:data:`DATASET_DTYPES`: Bijie, GVLM, the reference tiles and the
    authors' checkpoints are 8-bit RGB, Landslide4Sense is floating point); (2) your own imagery (``inventory``): the
    type recorded with the pipeline (``... (uint16 imagery)``); (3) the ``reference`` normalization with ``x / 255``
    on every band: 8-bit imagery. Otherwise the type is not known and not checked.
    """
    pre = preprocessing
    if pre.dataset in DATASET_DTYPES:
        return DATASET_DTYPES[pre.dataset], f'the {pre.dataset} imagery'
    found = re.search(r'\((u?int\d+|float\d+) imagery\)', pre.stats_source or '')
    if found:
        kind = found.group(1)
        return ('float' if kind.startswith('float') else kind), f'{pre.dataset or "its"} {kind} imagery'
    if pre.normalization == 'reference' and pre.scale and all(abs(s * 255 - 1) < 1e-6 for s in pre.scale):
        return 'uint8', 'x / 255 normalization'
    return None


def check_scene_dtype(scene: SceneInfo, spectral: Sequence[int], preprocessing: Preprocessing) -> None:
    """Refuse a scene whose data type differs from the training imagery's (see :func:`training_dtype`).

    The model was fitted to values of one range: 16-bit values through an 8-bit pipeline (``x / 255`` clipped to 1)
    saturate and give a confident, wrong map. No conversion is guessed (the bit depth and range of a uint16 scene are
    not known): convert the scene first. Integer types must match exactly; any float type fits a float pipeline.

    Args:
        scene: the scene.
        spectral: its 1-based spectral bands that feed the model.
        preprocessing: the checkpoint's pipeline.

    Raises:
        InputRasterError: one line naming the scene, its type and the training type and scale.
    """
    expected = training_dtype(preprocessing)
    if expected is None:
        return
    kind, source = expected
    types = sorted({scene.dtypes[i - 1] for i in spectral})
    fits = all(t.startswith('float') for t in types) if kind == 'float' else types == [kind]
    if fits:
        return
    pre = preprocessing
    scales = sorted(set(pre.scale))
    how = f'x * {scales[0]:.6g}' if len(scales) == 1 else f'x * ({", ".join(f"{v:.6g}" for v in pre.scale)})'
    if pre.normalization == 'dataset':
        how = f'(x - mean) / std with mean {", ".join(f"{m:.4g}" for m in pre.mean)}'
    hint = 'e.g. gdal_translate -ot Byte -scale <min> <max> 1 255 in.tif out.tif' if kind == 'uint8' else f'to {kind}'
    raise InputRasterError(
        f'{scene.path}: the scene is {"/".join(types)} but the checkpoint was trained on {kind} imagery ({source}; '
        f'{pre.normalization} normalization {how}); map does not guess how {"/".join(types)} values map onto {kind} '
        f'ones: convert the scene first ({hint})'
    )


def _read_dtype(dtypes: Sequence[str]) -> str:
    kinds = set(dtypes)
    if len(kinds) == 1 and next(iter(kinds)) in _KEEP_DTYPES:
        return next(iter(kinds))
    if kinds <= {'uint16', 'uint8', 'int16', 'int8'}:
        return 'int32'
    return 'float32'


class WindowReader:
    """Reads groups of windows from scenes; each process opens each file once.

    Args:
        tile: window edge T.
    """

    def __init__(self, tile: int) -> None:
        self.tile = tile
        self._pid = -1
        self._open: dict[str, Any] = {}

    def _dataset(self, path: str) -> Any:
        if self._pid != os.getpid():  # a forked DataLoader worker: never use the parent's GDAL handles
            self._open, self._pid = {}, os.getpid()
        if path not in self._open:
            self._open[path] = open_raster(path)
        return self._open[path]

    def close(self) -> None:
        """Close this process's files."""
        if self._pid == os.getpid():
            for src in self._open.values():
                src.close()
        self._open = {}

    def __getstate__(self) -> dict[str, Any]:
        return {'tile': self.tile, '_pid': -1, '_open': {}}

    def read(
        self, scene: SceneInfo, spectral: Sequence[int], dem: Sequence[int], windows: Sequence[tuple[int, int]]
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Raw values and validity of windows of one scene.

        Args:
            scene: the scene.
            spectral: 1-based spectral bands to read.
            dem: 1-based DEM/slope bands (may be empty).
            windows: ``(row, col)`` top-left pixels of ``n`` windows.

        Returns:
            ``image`` ``(n, C, T, T)`` raw values (uint8/int16/int32 as stored, else float32; nodata set to 0),
            ``dem`` ``(n, K, T, T)`` or ``None``, ``valid`` ``(n, T, T)`` bool.
        """
        from rasterio.enums import MaskFlags
        from rasterio.windows import Window

        src = self._dataset(scene.path)
        t, indexes = self.tile, [*spectral, *dem]
        dtype = _read_dtype([scene.dtypes[i - 1] for i in indexes])
        all_valid = all(MaskFlags.all_valid in src.mask_flag_enums[i - 1] for i in indexes)
        data = np.zeros((len(windows), len(indexes), t, t), dtype)
        valid = np.zeros((len(windows), t, t), bool)
        by_row: dict[int, list[int]] = {}
        for k, (y, _) in enumerate(windows):
            by_row.setdefault(y, []).append(k)
        for y, ks in by_row.items():
            x_lo = min(windows[k][1] for k in ks)
            x_hi = min(max(windows[k][1] for k in ks) + t, scene.width)
            h = min(t, scene.height - y)
            win = Window(x_lo, y, x_hi - x_lo, h)
            strip = src.read(indexes, window=win, out_dtype=dtype)
            ok = np.ones((h, x_hi - x_lo), bool) if all_valid else (src.read_masks(indexes, window=win) > 0).all(0)
            if dtype == 'float32':
                finite = np.isfinite(strip).all(0)
                ok &= finite
                strip[:, ~finite] = 0
            strip[:, ~ok] = 0
            for k in ks:
                x = windows[k][1]
                w = min(t, scene.width - x)
                data[k, :, :h, :w] = strip[:, :, x - x_lo : x - x_lo + w]
                valid[k, :h, :w] = ok[:, x - x_lo : x - x_lo + w]
        n_spec = len(spectral)
        image = torch.from_numpy(data[:, :n_spec])
        dem_t = torch.from_numpy(data[:, n_spec:]) if dem else None
        return image, dem_t, torch.from_numpy(valid)


# ---------------------------------------------------------------------------------------------- writing
def _tmp(path: Path) -> Path:
    return path.with_name(f'.{path.name}.tmp-{os.getpid()}')


def write_block(
    path: PathLike, scene: SceneInfo, block: Block, bands: Sequence[np.ndarray], tags: dict[str, Any]
) -> None:
    """Write one block's output bands as a GeoTIFF in the scene's pixel grid, atomically.

    The file is written under a temporary name, read back and compared, then renamed: a block file that exists is
    complete.

    Args:
        path: the block file.
        scene: the scene (CRS and transform).
        block: the block (its pixel offset).
        bands: uint8 ``(h, w)`` arrays, one per output band.
        tags: metadata (counts) stored in the file.

    Raises:
        OutputWriteError: the file could not be written (disk full, ...).
    """
    import rasterio
    from affine import Affine

    path = Path(path)
    tmp = _tmp(path)
    h, w = block.shape
    tiled = h >= 256 and w >= 256
    profile = {
        'driver': 'GTiff', 'height': h, 'width': w, 'count': len(bands), 'dtype': 'uint8', 'nodata': NODATA,
        'crs': scene.crs_wkt, 'transform': scene.affine @ Affine.translation(block.x0, block.y0), 'tiled': tiled,
        'compress': 'deflate', 'zlevel': 1,
    }  # fmt: skip
    if tiled:
        profile.update(blockxsize=256, blockysize=256)
    stack = np.stack(bands)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with rasterio.open(tmp, 'w', **profile) as dst:
                dst.write(stack)
                dst.update_tags(**{k: str(v) for k, v in tags.items()})
            with rasterio.open(tmp) as check:
                if not np.array_equal(check.read(), stack):
                    raise OSError(f'{tmp}: the data read back differ from the data written')
        os.replace(tmp, path)
    except Exception as err:
        tmp.unlink(missing_ok=True)
        raise write_error(err, path) from err


def read_tags(path: PathLike) -> dict[str, str]:
    """The dataset tags of a raster."""
    with open_raster(path) as src:
        return dict(src.tags())


@dataclass(frozen=True)
class VRTBand:
    """A band of a VRT: description, scale (GDAL ``Scale``) and nodata."""

    description: str
    scale: float = 1.0
    nodata: int = NODATA


@dataclass(frozen=True)
class VRTSource:
    """A source raster placed in a VRT at pixel offset ``(x, y)`` with size ``(width, height)``."""

    path: str
    x: float
    y: float
    width: float
    height: float
    src_width: int
    src_height: int


def write_vrt(
    path: PathLike,
    width: int,
    height: int,
    crs_wkt: str | None,
    transform: Sequence[float],
    bands: Sequence[VRTBand],
    sources: Sequence[VRTSource],
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write a GDAL VRT made of ``sources`` (each holding ``len(bands)`` uint8 bands).

    Args:
        path: the ``.vrt`` file (source paths are written relative to it when they are below its folder).
        width: VRT columns.
        height: VRT rows.
        crs_wkt: CRS, or ``None``.
        transform: affine coefficients ``(a, b, c, d, e, f)``.
        bands: the bands.
        sources: the rasters and where they go; later sources are drawn over earlier ones except where nodata.
        metadata: dataset metadata items.
    """
    path = Path(path)
    a, b, c, d, e, f = transform
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if crs_wkt:
        lines.append(f'  <SRS>{escape(crs_wkt)}</SRS>')
    lines.append(f'  <GeoTransform>{c!r}, {a!r}, {b!r}, {f!r}, {d!r}, {e!r}</GeoTransform>')
    if metadata:
        lines.append('  <Metadata>')
        lines += [f'    <MDI key={quoteattr(str(k))}>{escape(str(v))}</MDI>' for k, v in metadata.items()]
        lines.append('  </Metadata>')
    for i, band in enumerate(bands, 1):
        lines.append(f'  <VRTRasterBand dataType="Byte" band="{i}">')
        lines.append(f'    <Description>{escape(band.description)}</Description>')
        lines.append(f'    <NoDataValue>{band.nodata}</NoDataValue>')
        if band.scale != 1.0:
            lines.append(f'    <Offset>0</Offset>\n    <Scale>{band.scale!r}</Scale>')
        for s in sources:
            try:
                name, relative = os.path.relpath(s.path, path.parent), 1
                if name.startswith('..'):
                    name, relative = os.path.abspath(s.path), 0
            except ValueError:  # another drive (Windows)
                name, relative = os.path.abspath(s.path), 0
            lines += [
                '    <ComplexSource>',
                f'      <SourceFilename relativeToVRT="{relative}">{escape(name)}</SourceFilename>',
                f'      <SourceBand>{i}</SourceBand>',
                f'      <SrcRect xOff="0" yOff="0" xSize="{s.src_width}" ySize="{s.src_height}"/>',
                f'      <DstRect xOff="{s.x!r}" yOff="{s.y!r}" xSize="{s.width!r}" ySize="{s.height!r}"/>',
                f'      <NODATA>{band.nodata}</NODATA>',
                '    </ComplexSource>',
            ]
        lines.append('  </VRTRasterBand>')
    lines.append('</VRTDataset>')
    tmp = _tmp(path)
    try:
        tmp.write_text('\n'.join(lines) + '\n')
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_error(err, path) from err


def to_cog(src: PathLike, dst: PathLike, resampling: str) -> None:
    """Convert a raster (e.g. a VRT) into a Cloud-Optimized GeoTIFF (512 px tiles, DEFLATE, overviews).

    Raises:
        OutputWriteError: the COG could not be written (``dst`` is then removed).
    """
    import rasterio
    import rasterio.shutil

    dst = Path(dst)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            rasterio.shutil.copy(
                src, dst, driver='COG', COMPRESS='DEFLATE', BLOCKSIZE=512, OVERVIEWS='AUTO', RESAMPLING=resampling,
                BIGTIFF='IF_SAFER',
            )  # fmt: skip
            with rasterio.open(dst) as check:  # complete: the last tile of every band decodes
                from rasterio.windows import Window

                h, w = min(512, check.height), min(512, check.width)
                check.read(window=Window(check.width - w, check.height - h, w, h))
    except Exception as err:
        dst.unlink(missing_ok=True)
        raise write_error(err, dst) from err
