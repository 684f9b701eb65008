"""Assembly of a scene's outputs from its finished blocks: the COG, the merged polygons and the summary.

Run once per scene, by the process that finishes its last block (or by rank 0 at the end): a VRT lays the block
files out in the scene's grid, GDAL's COG driver streams it into the output GeoTIFF, the blocks' polygons are
merged across seams and written in the scene's CRS, and the summary is computed from the blocks' counts. All three
are written into the state folder first (``staged/``), recorded in ``final.json``, then renamed into place: the
outputs appear complete or not at all, and a crash between two renames is finished by the next run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .polygons import load_block_polygons, merge_polygons, write_polygons
from .raster import SceneInfo, VRTBand, VRTSource, read_tags, to_cog, write_error, write_vrt
from .state import RunState
from .windows import PROBABILITY_SCALE, ScenePlan

__all__ = [
    'SceneOutputs',
    'apply_moves',
    'assemble_scene',
    'check_mosaic',
    'output_bands',
    'summary_table',
    'write_mosaic',
]


@dataclass(frozen=True)
class SceneOutputs:
    """Where a scene's outputs go.

    Attributes:
        raster: the COG.
        polygons: the polygon file, or ``None``.
        summary: the summary JSON.
        quicklook: the quick-look PNG, or ``None``.
    """

    raster: Path
    polygons: Path | None
    summary: Path
    quicklook: Path | None = None

    def paths(self) -> list[Path]:
        """Every output path."""
        return [p for p in (self.raster, self.polygons, self.summary, self.quicklook) if p is not None]


def output_bands(write_probability: bool, write_mask: bool) -> list[VRTBand]:
    """The output bands, in order."""
    bands = [VRTBand('landslide_probability', 1 / PROBABILITY_SCALE)] if write_probability else []
    return bands + ([VRTBand('landslide_mask')] if write_mask else [])


def apply_moves(moves: list[tuple[str, str]]) -> None:
    """Rename staged files into place (files already moved by an interrupted attempt are skipped)."""
    for src, dst in moves:
        if Path(src).exists():
            try:
                Path(dst).parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
            except OSError as err:
                raise write_error(err, dst) from err
        elif not Path(dst).exists():
            raise FileNotFoundError(f'{src}: staged output missing, and {dst} was not written; rerun with --overwrite')


def assemble_scene(
    state: RunState,
    scene: SceneInfo,
    plan: ScenePlan,
    outputs: SceneOutputs,
    settings: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    """Build a scene's outputs from its finished blocks and rename them into place.

    Args:
        state: the run state.
        scene: the scene.
        plan: its plan (all its blocks must be finished).
        outputs: where the outputs go.
        settings: ``write_probability``, ``write_mask``, ``min_area``, ``tags`` (output metadata), ``rule``.
        started: ``time.perf_counter()`` at the start of this attempt.

    Returns:
        The scene's summary.
    """
    blocks = plan.blocks(scene.index)
    folder = state.block_dir(scene.index)
    staged = state.staged_dir(scene.index)
    bands = output_bands(settings['write_probability'], settings['write_mask'])
    counts = {'windows': 0, 'windows_skipped': 0, 'valid_pixels': 0, 'landslide_pixels': 0, 'model_seconds': 0.0}
    sources, ranks = [], set()
    for b in blocks:
        path = folder / f'{b.name}.tif'
        tags = read_tags(path)
        ranks.add(int(tags['rank']))
        for key in counts:
            counts[key] += type(counts[key])(float(tags[key])) if key == 'model_seconds' else int(tags[key])
        h, w = b.shape
        sources.append(VRTSource(str(path), b.x0, b.y0, w, h, w, h))
    vrt = staged / 'blocks.vrt'
    write_vrt(vrt, scene.width, scene.height, scene.crs_wkt, scene.transform, bands, sources, settings['tags'])
    cog = staged / 'map.tif'
    cog.unlink(missing_ok=True)  # left by an interrupted attempt
    to_cog(vrt, cog, resampling='NEAREST' if settings['write_mask'] else 'AVERAGE')
    moves = [(str(cog), str(outputs.raster))]
    n_polygons = polygon_area = None
    if outputs.polygons is not None:
        interior: list[Any] = []
        seam: list[Any] = []
        for b in blocks:
            i, s = load_block_polygons(folder / f'{b.name}.npz')
            interior += i
            seam += s
        staged_polygons = staged / f'polygons{outputs.polygons.suffix}'
        n_polygons, polygon_area = write_polygons(
            staged_polygons, merge_polygons(interior, seam), scene.transform, scene.crs_wkt, scene.pixel_area,
            settings['min_area'], layer=outputs.polygons.stem, square_metres_per_unit=scene.square_metres_per_unit(),
            scene_name=scene.name,
        )  # fmt: skip
        moves.append((str(staged_polygons), str(outputs.polygons)))
    sq = scene.square_metres_per_unit()
    area = counts['landslide_pixels'] * scene.pixel_area
    summary = {
        'input': scene.path,
        'output': str(outputs.raster),
        'polygons': str(outputs.polygons) if outputs.polygons is not None else None,
        'summary': str(outputs.summary),
        'height': scene.height,
        'width': scene.width,
        'crs': scene.crs_name,
        'tile_size': plan.tile,
        'overlap': plan.overlap,
        'blocks': len(blocks),
        'windows_in_scene': plan.num_windows,
        **counts,
        'landslide_fraction': counts['landslide_pixels'] / max(counts['valid_pixels'], 1),
        'landslide_area': area,
        'area_unit': scene.area_unit(),
        'landslide_area_km2': area * sq / 1e6 if sq is not None else None,
        'num_polygons': n_polygons,
        'polygon_area': polygon_area,
        'windows_per_second': counts['windows'] / counts['model_seconds'] if counts['model_seconds'] else None,
        'seconds': time.perf_counter() - started,
        'ranks': sorted(ranks),
        'rule': settings['rule'],
        'quicklook': str(outputs.quicklook) if outputs.quicklook is not None else None,
    }
    if outputs.quicklook is not None:
        moves.append((str(_quicklook(staged, scene, cog, outputs, summary, settings)), str(outputs.quicklook)))
    staged_summary = staged / 'summary.json'
    try:
        staged_summary.write_text(json.dumps(summary, indent=2) + '\n')
    except OSError as err:
        raise write_error(err, staged_summary) from err
    moves.append((str(staged_summary), str(outputs.summary)))
    state.mark_final(scene.index, moves, summary)
    apply_moves(moves)
    state.mark_done(scene.index, summary)
    return summary


def _quicklook(staged: Path, scene: SceneInfo, cog: Path, outputs: SceneOutputs, summary: dict[str, Any],
               settings: dict[str, Any]) -> Path:  # fmt: skip
    """The staged quick-look PNG: scene, probability, polygon outlines (see :mod:`.quicklook`)."""
    from .quicklook import Outlines, QuickLook, write_quicklook

    outlines = []
    if outputs.polygons is not None:
        import geopandas as gpd

        frame = gpd.read_file(staged / f'polygons{outputs.polygons.suffix}')
        outlines.append(Outlines(list(frame.geometry), 'cyan', 'mapped landslides ({n})'))
    if summary['landslide_area_km2'] is not None:
        area = f'{summary["landslide_area_km2"]:.4f} km²'
    else:
        area = f'{summary["landslide_area"]:.0f} {summary["area_unit"].replace("^2", "²")}'
    look = QuickLook(
        title=scene.name, subtitle=f'landslides: {area} ({100 * summary["landslide_fraction"]:.2f} % of the valid '
        f'area), rule {settings["rule"]}', scene=scene.path, rgb_bands=settings.get('rgb_bands'),
        overlay=cog if settings['write_probability'] else None, overlay_scale=1 / PROBABILITY_SCALE,
        outlines=outlines,
    )  # fmt: skip
    return write_quicklook(staged / 'quicklook.png', look, cog)


# ---------------------------------------------------------------------------------------------- mosaic
def check_mosaic(scenes: list[SceneInfo]) -> None:
    """Refuse, before any work, a mosaic of scenes that do not share a CRS and a north-up pixel size.

    Raises:
        ConfigError: naming the first scene that differs from the first one.
    """
    from rasterio.crs import CRS

    first = scenes[0]
    if first.crs_wkt is None:
        raise ConfigError(f'--mosaic: {first.path} has no CRS; a mosaic needs georeferenced scenes')
    for s in scenes:
        a, b, _, d, e, _ = s.transform
        fa, _, _, _, fe, _ = first.transform
        if s.crs_wkt is None or CRS.from_wkt(s.crs_wkt) != CRS.from_wkt(first.crs_wkt):
            raise ConfigError(
                f'--mosaic: {s.path} is in {s.crs_name}, {first.path} in {first.crs_name}; a mosaic needs one CRS '
                f'(map without --mosaic: each scene keeps its own CRS)'
            )
        if b or d or abs(a - fa) > 1e-9 * abs(fa) or abs(e - fe) > 1e-9 * abs(fe):
            raise ConfigError(
                f'--mosaic: {s.path} has pixels of {a!r} x {e!r} (rotation {b!r}, {d!r}), {first.path} of {fa!r} x '
                f'{fe!r}; a mosaic needs the same north-up pixel size'
            )


def write_mosaic(path: Path, scenes: list[SceneInfo], rasters: list[Path], bands: list[VRTBand], tmp_dir: Path) -> None:
    """A VRT (``.vrt``) or COG (``.tif``) over the scenes' output rasters (later scenes on top where they overlap).

    Args:
        path: the mosaic.
        scenes: the scenes (same CRS and pixel size, see :func:`check_mosaic`).
        rasters: their output COGs.
        bands: the output bands.
        tmp_dir: where the COG is built before it is renamed into place.
    """
    a, _, _, _, e, _ = scenes[0].transform
    x0 = min(s.transform[2] for s in scenes)
    y0 = max(s.transform[5] for s in scenes)
    x1 = max(s.transform[2] + a * s.width for s in scenes)
    y1 = min(s.transform[5] + e * s.height for s in scenes)
    width, height = round((x1 - x0) / a), round((y1 - y0) / e)
    sources = [
        VRTSource(str(r), (s.transform[2] - x0) / a, (s.transform[5] - y0) / e, s.width, s.height, s.width, s.height)
        for s, r in zip(scenes, rasters, strict=True)
    ]
    transform = (a, 0.0, x0, 0.0, e, y0)
    if path.suffix.lower() == '.vrt':
        write_vrt(path, width, height, scenes[0].crs_wkt, transform, bands, sources)
        return
    vrt = tmp_dir / 'mosaic.vrt'
    write_vrt(vrt, width, height, scenes[0].crs_wkt, transform, bands, sources)
    tmp = tmp_dir / 'mosaic.tif'
    to_cog(vrt, tmp, resampling='NEAREST')
    apply_moves([(str(tmp), str(path))])


def summary_table(summaries: list[dict[str, Any]]) -> str:
    """The scenes' summaries as a table (printed at the end of a run), then the paths of the maps and summaries."""
    lines = [f'\n{"scene":<28} {"W x H px":>15} {"windows":>8} {"nodata":>7} {"win/s":>7} {"landslide":>14} '
             f'{"polygons":>8} {"s":>7}']  # fmt: skip
    for s in summaries:
        if s['landslide_area_km2'] is not None:
            area = f'{s["landslide_area_km2"]:.4f} km2'
        else:
            area = f'{s["landslide_area"]:.0f} {s["area_unit"].replace("^2", "2")}'
        wps = f'{s["windows_per_second"]:.2f}' if s['windows_per_second'] else '-'
        polys = '-' if s['num_polygons'] is None else str(s['num_polygons'])
        name = Path(s['input']).name
        name = name if len(name) <= 28 else name[:25] + '...'
        size = f'{s["width"]} x {s["height"]}'
        lines.append(f'{name:<28} {size:>15} {s["windows"]:>8} {s["windows_skipped"]:>7} '
                     f'{wps:>7} {area:>14} {polys:>8} {s["seconds"]:>7.1f}')  # fmt: skip
    lines.append(f'maps: {", ".join(s["output"] for s in summaries)}')
    lines.append(f'summaries (JSON): {", ".join(s["summary"] for s in summaries)}')
    return '\n'.join(lines)
