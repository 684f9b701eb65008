"""Quick-look pictures of a map: a PNG a person reads without a GIS.

The scene in true colour (2-98 percentile stretch over its valid pixels), the landslide probability as a colour
overlay, outlines of polygons (landslides; or found / missed / false landslides for ``evaluate``), a scale bar and a
north arrow where the CRS is projected or geographic, and a title.

Memory is flat in the scene size: every raster is read decimated to at most ``max_size`` pixels along its longest
edge (rasterio ``out_shape``: GDAL takes the overviews of a COG, or samples the blocks of any other raster through
its bounded block cache), never at full resolution.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..visualize import percentile_stretch
from .raster import open_raster, write_error

__all__ = ['Outlines', 'QuickLook', 'read_decimated', 'rgb_band_indexes', 'write_quicklook']

PathLike = str | os.PathLike[str]

#: Opacity of the probability overlay at probability 1 (0 below 0.2, rising linearly to this at 0.8).
OVERLAY_ALPHA = 0.55


@dataclass
class Outlines:
    """Polygons drawn as outlines.

    Attributes:
        geometries: shapely (Multi)Polygons in the picture's CRS coordinates.
        color: a matplotlib colour.
        label: the legend entry (``'{n}'`` is replaced by the number of polygons).
    """

    geometries: Sequence[Any]
    color: str
    label: str


@dataclass
class QuickLook:
    """What a quick-look shows.

    Attributes:
        title: first line of the title (the scene's name).
        subtitle: second line (landslide area, scores, ...).
        scene: the scene raster (true colour background), or ``None`` (a grey background).
        rgb_bands: 1-based red, green, blue bands of ``scene`` (one band: grey).
        overlay: a raster whose band ``overlay_band`` is drawn as a colour overlay (``map``'s COG), or ``None``.
        overlay_band: its band.
        overlay_scale: raw value x scale = probability (1/254 for ``map``'s probability band).
        overlay_label: label of the colour bar.
        outlines: the polygons, drawn in order.
        max_size: longest edge of the decimated reads (pixels; about the picture's own width).
    """

    title: str
    subtitle: str = ''
    scene: PathLike | None = None
    rgb_bands: Sequence[int] | None = None
    overlay: PathLike | None = None
    overlay_band: int = 1
    overlay_scale: float = 1.0
    overlay_label: str = 'landslide probability'
    outlines: list[Outlines] = field(default_factory=list)
    max_size: int = 1000


def rgb_band_indexes(spectral: Sequence[int], rgb_indices: Sequence[int] | None) -> list[int]:
    """The scene's 1-based red, green, blue bands from the model's bands (``Preprocessing.rgb_indices``).

    Args:
        spectral: 1-based scene bands fed to the model, in the model's order.
        rgb_indices: positions of red, green, blue in them (``None``: the first three, or the first one).

    Returns:
        Three band indexes, or one (grey).
    """
    if rgb_indices is not None and len(rgb_indices) == 3 and max(rgb_indices) < len(spectral):
        return [int(spectral[i]) for i in rgb_indices]
    return [int(b) for b in spectral[:3]] if len(spectral) >= 3 else [int(spectral[0])]


def read_decimated(path: PathLike, bands: Sequence[int], max_size: int) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """Bands of a raster at a reduced size (from its overviews where it has them).

    Args:
        path: the raster.
        bands: 1-based bands.
        max_size: longest edge of the result.

    Returns:
        ``(data (C, h, w) float32, valid (h, w) bool, the reduced grid's transform, the CRS or None)``.
    """
    from rasterio.enums import Resampling

    with open_raster(path) as src:
        f = max(1.0, max(src.height, src.width) / max_size)
        h, w = max(1, round(src.height / f)), max(1, round(src.width / f))
        data = src.read(list(bands), out_shape=(len(bands), h, w), resampling=Resampling.nearest, out_dtype='float32')
        valid = (src.read_masks(list(bands), out_shape=(len(bands), h, w)) > 0).all(0)
        valid &= np.isfinite(data).all(0)
        transform = src.transform * src.transform.scale(src.width / w, src.height / h)
        return data, valid, transform, src.crs


def _extent(transform: Any, height: int, width: int) -> list[float]:
    return [transform.c, transform.c + transform.a * width, transform.f + transform.e * height, transform.f]


def _nice_length(span: float) -> float:
    """A 1/2/5 x 10^k length near a fifth of ``span``."""
    target = span / 5
    base = 10 ** math.floor(math.log10(target))
    return max(m * base for m in (1, 2, 5) if m * base <= target)


def _scale_bar(ax: Any, extent: list[float], crs: Any) -> None:
    left, right, bottom, top = extent
    width = abs(right - left)
    if crs.is_projected:
        metres_per_unit = float(crs.linear_units_factor[1])
        ground = width * metres_per_unit
    else:  # geographic: metres per degree of longitude at the picture's centre latitude
        lat = math.radians((top + bottom) / 2)
        metres_per_unit = 111_320.0 * max(math.cos(lat), 1e-6)
        ground = width * metres_per_unit
    length_m = _nice_length(ground)
    length = length_m / metres_per_unit
    text = f'{length_m / 1000:g} km' if length_m >= 1000 else f'{length_m:g} m'
    x0 = min(left, right) + 0.05 * width
    height = abs(top - bottom)
    y0 = min(top, bottom) + 0.05 * height
    ax.plot([x0, x0 + length], [y0, y0], color='black', linewidth=6, solid_capstyle='butt', zorder=10)
    ax.plot([x0, x0 + length / 2], [y0, y0], color='white', linewidth=4, solid_capstyle='butt', zorder=11)
    ax.text(x0 + length / 2, y0 + 0.025 * height, text, ha='center', va='bottom', fontsize=9, zorder=12,
            bbox={'facecolor': 'white', 'alpha': 0.75, 'edgecolor': 'none', 'pad': 1.5})  # fmt: skip


def _north_arrow(ax: Any) -> None:
    ax.annotate('N', xy=(0.95, 0.95), xytext=(0.95, 0.83), xycoords='axes fraction', ha='center', va='center',
                fontsize=12, fontweight='bold', zorder=12,
                arrowprops={'facecolor': 'black', 'edgecolor': 'white', 'width': 4, 'headwidth': 12},
                bbox={'facecolor': 'white', 'alpha': 0.75, 'edgecolor': 'none', 'pad': 1.5})  # fmt: skip


def _rings(geometries: Sequence[Any], tolerance: float) -> list[np.ndarray]:
    import shapely

    rings: list[np.ndarray] = []
    for g in geometries:
        if g is None or g.is_empty:
            continue
        g = shapely.simplify(g, tolerance) if tolerance > 0 else g
        for part in getattr(g, 'geoms', [g]):
            if part.geom_type != 'Polygon' or part.is_empty:
                continue
            rings.append(np.asarray(part.exterior.coords)[:, :2])
            rings += [np.asarray(r.coords)[:, :2] for r in part.interiors]
    return rings


def write_quicklook(path: PathLike, look: QuickLook, grid: PathLike) -> Path:
    """Draw a quick-look PNG.

    Args:
        path: the PNG (replaced if it exists: callers check for existing outputs first).
        look: what to draw.
        grid: the raster that sets the picture's extent and CRS (``map``'s COG, or the evaluated raster).

    Returns:
        ``path``.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    path = Path(path)
    with open_raster(grid) as src:
        crs = src.crs
        georeferenced = crs is not None and src.transform.b == 0 and src.transform.d == 0
        extent = _extent(src.transform, src.height, src.width)
        pixel = abs(src.transform.a) * max(1.0, max(src.height, src.width) / look.max_size)
    fig = Figure(figsize=(9, 8.4), dpi=110, layout='constrained')
    ax = fig.add_subplot()
    ax.set_facecolor('#d9d9d9')
    if look.scene is not None:
        bands = list(look.rgb_bands or [1])
        data, valid, transform, scene_crs = read_decimated(look.scene, bands, look.max_size)
        if scene_crs == crs or (scene_crs is None) == (crs is None):
            img = np.moveaxis(data, 0, -1)
            img[~valid] = np.nan
            img = percentile_stretch(img) if valid.any() else np.zeros_like(img)
            img = np.repeat(img, 3, -1) if img.shape[-1] == 1 else img
            rgba = (np.concatenate([img, valid[..., None].astype(np.float32)], -1) * 255).astype(np.uint8)
            del data, img
            ax.imshow(rgba, extent=_extent(transform, *valid.shape), interpolation='nearest', zorder=1)
    if look.overlay is not None:
        data, valid, transform, _ = read_decimated(look.overlay, [look.overlay_band], look.max_size)
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        p = np.clip(data[0] * look.overlay_scale, 0, 1)
        p[~valid] = 0
        rgba = colormaps['inferno'](p, bytes=True)  # uint8: a quarter of the float pixels matplotlib would copy
        # low probabilities leave the scene visible; high ones at most OVERLAY_ALPHA, so the imagery under a mapped
        # landslide still shows through
        rgba[..., 3] = np.round(np.clip((p - 0.2) / 0.6, 0, 1) * OVERLAY_ALPHA * 255).astype(np.uint8)
        del data
        ax.imshow(rgba, extent=_extent(transform, *valid.shape), interpolation='nearest', zorder=2)
        bar = ScalarMappable(Normalize(0, 1), colormaps['inferno'])
        fig.colorbar(bar, ax=ax, shrink=0.6, label=f'{look.overlay_label} (transparent below 0.2)', pad=0.01)
    handles = []
    for o in look.outlines:
        rings = _rings(o.geometries, pixel / 2)
        if rings:
            ax.add_collection(LineCollection(rings, colors=o.color, linewidths=1.2, zorder=5))
        n = sum(1 for g in o.geometries if g is not None and not g.is_empty)
        handles.append(Line2D([], [], color=o.color, linewidth=2, label=o.label.replace('{n}', str(n))))
    if handles:
        ax.legend(handles=handles, loc='lower right', fontsize=9, framealpha=0.8)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect('equal')
    if georeferenced:
        _scale_bar(ax, extent, crs)
        _north_arrow(ax)
        name = crs.to_string() if crs.to_epsg() is None else f'EPSG:{crs.to_epsg()}'
        ax.set_xlabel(f'{name} x ({crs.linear_units if crs.is_projected else "degree"})', fontsize=8)
        ax.set_ylabel(f'{name} y ({crs.linear_units if crs.is_projected else "degree"})', fontsize=8)
        ax.ticklabel_format(useOffset=False, style='plain')
    else:
        ax.set_xlabel('column (pixel grid, no CRS: no scale)', fontsize=8)
        ax.set_ylabel('row', fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(look.title + (f'\n{look.subtitle}' if look.subtitle else ''), fontsize=11)
    tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            fig.savefig(tmp, format='png')
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_error(err, path) from err
    return path
