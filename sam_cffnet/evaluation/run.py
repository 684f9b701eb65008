"""``evaluate``: a map against a reference inventory, scene by scene and overall.

:func:`evaluate` checks every input and output before any work (:mod:`.inputs`), then per scene: the objects of both
sides (polygons, or a raster's landslide pixels vectorized block by block), clipped to the evaluated area; one
streamed pass over the pixel grid (:mod:`.pixels`) for the pixel scores and each object's pixels with data; objects
lying mostly on nodata are left out; the matching (:mod:`.objects`); the tables, the GeoPackage and the quick-look.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, MissingFileError, OutputExistsError
from ..inference.params import resolve_inputs
from .inputs import Alignment, Layer, align, check_threshold, open_layer, raster_polygons
from .objects import match_objects, object_scores
from .pixels import count_pixels, pixel_scores
from .report import write_polygon_layers, write_tables

__all__ = ['EvaluateParams', 'evaluate']

PathLike = str | os.PathLike[str]

#: An object with less than this share of its pixels on data (both sides, inside the area of interest) is left out.
MIN_VALID_FRACTION = 0.5


@dataclass
class EvaluateParams:
    """The settings of ``evaluate``.

    Attributes:
        inputs: maps (``map``'s COGs, label rasters or polygon files) or glob patterns, one per scene.
        reference: the reference inventory: one file for every scene, or one per scene in the order of ``inputs``.
        output_dir: the folder of the reports.
        aoi: polygons of the area of interest (only it is evaluated), or ``None``.
        scenes: the scenes' imagery for the quick-looks (one per input); default: the ``input`` recorded in a
            ``map`` output's ``<stem>.summary.json``.
        iou_threshold: ``t`` of the matching rule (:mod:`.objects`).
        size_classes: edges of the size classes (m², or pixels without a CRS), ascending.
        threshold: probability threshold for a map with only a probability band (default: the map's).
        block_size: window edge of the pixel pass (pixels).
        quicklook: write a quick-look PNG per scene.
        overwrite: replace existing reports.
    """

    inputs: Sequence[PathLike]
    reference: Sequence[PathLike]
    output_dir: PathLike
    aoi: PathLike | None = None
    scenes: Sequence[PathLike] | None = None
    iou_threshold: float = 0.5
    size_classes: Sequence[float] = (1_000.0, 10_000.0, 100_000.0)
    threshold: float | None = None
    block_size: int = 1024
    quicklook: bool = True
    overwrite: bool = False


def _area_m2(geoms: Sequence[Any], crs: Any) -> tuple[np.ndarray, str, float | None]:
    """Areas in m² (projected or geographic CRS) or pixels² (no CRS); also the unit and m² per CRS unit²."""
    areas = np.array([g.area for g in geoms], dtype=np.float64)
    if crs is None:
        return areas, 'px²', None
    if crs.is_projected:
        factor = float(crs.linear_units_factor[1]) ** 2
        return areas * factor, 'm²', factor
    import geopandas as gpd

    series = gpd.GeoSeries(list(geoms), crs=crs.to_wkt())
    if not len(series):
        return areas, 'm²', None
    return np.asarray(series.to_crs(series.estimate_utm_crs()).area, dtype=np.float64), 'm²', None


def _clip(geoms: Sequence[Any], domain: Any) -> list[Any]:
    """Objects inside the evaluated area (polygonal parts only, empties dropped)."""
    import shapely

    if domain is None:
        return [g for g in geoms if not g.is_empty]
    shapely.prepare(domain)
    out = []
    for g in geoms:
        c = g if shapely.contains(domain, g) else shapely.intersection(g, domain)
        parts = [p for p in getattr(c, 'geoms', [c]) if p.geom_type in ('Polygon', 'MultiPolygon') and p.area > 0]
        if parts:
            out.append(parts[0] if len(parts) == 1 else shapely.union_all(parts))
    return out


def _objects(layer: Layer, crs: Any, block: int) -> list[Any]:
    if layer.kind == 'polygons':
        return list(layer.geometries)
    polys = raster_polygons(layer, block)
    if layer.crs is not None and crs is not None and layer.crs != crs:
        import geopandas as gpd

        polys = list(gpd.GeoSeries(polys, crs=layer.crs.to_wkt()).to_crs(crs.to_wkt()))
    return polys


@dataclass
class _Scene:
    map: Layer
    reference: Layer
    aoi: Layer | None
    alignment: Alignment
    scene: Path | None
    stem: str


class Evaluation:
    """One ``evaluate`` run: :meth:`__init__` checks everything, :meth:`run` works (see the module docstring)."""

    def __init__(self, params: EvaluateParams) -> None:
        p = params
        if not 0 < p.iou_threshold <= 1:
            raise ConfigError(f'--iou-threshold {p.iou_threshold}: expected a value in (0, 1]')
        check_threshold(p.threshold)
        if list(p.size_classes) != sorted(p.size_classes) or any(e <= 0 for e in p.size_classes):
            raise ConfigError(f'--size-classes {list(p.size_classes)}: expected positive, ascending area edges')
        if p.block_size <= 0:
            raise ConfigError(f'--block-size {p.block_size}: expected a positive number of pixels')
        self.params = p
        inputs = resolve_inputs(p.inputs)
        refs = resolve_inputs(p.reference)
        if len(refs) not in (1, len(inputs)):
            raise ConfigError(
                f'--reference names {len(refs)} files for {len(inputs)} maps: give one inventory for all, or one per '
                f'map in the same order'
            )
        scenes: list[Path | None] = [None] * len(inputs)
        if p.scenes:
            given = resolve_inputs(p.scenes)
            if len(given) != len(inputs):
                raise ConfigError(f'--scene names {len(given)} files for {len(inputs)} maps: give one per map')
            for s in given:
                if not s.exists():
                    raise MissingFileError(f'--scene {s}: no such file')
            scenes = list(given)
        out = Path(p.output_dir)
        if out.exists() and not out.is_dir():
            raise ConfigError(f'--output-dir {out} is a file, expected a folder')
        aoi = open_layer(p.aoi, '--aoi') if p.aoi is not None else None
        if aoi is not None and aoi.kind != 'polygons':
            raise ConfigError(f'--aoi {p.aoi}: expected a polygon file (.gpkg, .geojson, .shp)')
        shared = open_layer(refs[0], '--reference') if len(refs) == 1 else None
        self.scenes: list[_Scene] = []
        stems: dict[str, Path] = {}
        for i, path in enumerate(inputs):
            mapped = open_layer(path, '--input', p.threshold)
            ref = dataclasses.replace(shared, geometries=list(shared.geometries)) if shared is not None \
                else open_layer(refs[i], '--reference')  # fmt: skip
            area = dataclasses.replace(aoi, geometries=list(aoi.geometries)) if aoi is not None else None
            alignment = align(mapped, ref, area)
            stem = Path(path).stem
            if stem in stems:
                raise ConfigError(f'{stems[stem]} and {path} would both write {out / stem}.evaluation.*; rename one')
            stems[stem] = Path(path)
            scene = scenes[i] or self._recorded_scene(Path(path))
            self.scenes.append(_Scene(mapped, ref, area, alignment, scene, stem))
        self.outputs = [out / f'evaluation{s}' for s in ('.md', '.csv', '.json')]
        for s in self.scenes:
            self.outputs += [out / f'{s.stem}.evaluation{x}' for x in ('.md', '.csv', '.json', '.gpkg')]
            if p.quicklook:
                self.outputs.append(out / f'{s.stem}.evaluation.png')
        inputs_resolved = {x.resolve() for x in [*inputs, *refs]}
        for o in self.outputs:
            if o.resolve() in inputs_resolved:
                raise ConfigError(f'the output {o} is an input')
            if o.exists() and not p.overwrite:
                raise OutputExistsError(f'{o} exists; pass --overwrite to replace it')

    @staticmethod
    def _recorded_scene(path: Path) -> Path | None:
        """The scene a ``map`` output was made from (its ``<stem>.summary.json``), if it is still there."""
        summary = path.with_name(path.stem + '.summary.json')
        if path.suffix.lower() in ('.tif', '.tiff') and summary.is_file():
            try:
                recorded = Path(json.loads(summary.read_text())['input'])
            except (ValueError, KeyError, TypeError):
                return None
            return recorded if recorded.is_file() else None
        return None

    def run(self) -> dict[str, Any]:
        """Evaluate every scene, write the reports; returns ``{'scenes': [...], 'all': {...}}``."""
        out = Path(self.params.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        results, parts = [], []
        for s in self.scenes:
            result, part = self._scene(s, out)
            results.append(result)
            parts.append(part)
        overall = self._combine(parts)
        write_tables(out / 'evaluation', [*results, overall] if len(results) > 1 else [overall],
                     'Evaluation: all scenes')  # fmt: skip
        return {'scenes': results, 'all': overall}

    def _scene(self, s: _Scene, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        p = self.params
        crs, domain = s.alignment.crs, s.alignment.domain
        reference = _clip(_objects(s.reference, crs, p.block_size), domain)
        mapped = _clip(_objects(s.map, crs, p.block_size), domain)
        pixels = None
        keep_r = np.ones(len(reference), bool)
        keep_m = np.ones(len(mapped), bool)
        confusion = None
        if s.alignment.grid is not None:
            counts = count_pixels(s.map, s.reference, s.alignment, mapped, reference, p.block_size)
            confusion = counts.confusion
            pixels = {**pixel_scores(confusion), 'confusion': confusion.tolist(),
                      'evaluated_pixels': int(confusion.sum())}  # fmt: skip
            keep_r = (counts.reference_total == 0) | (
                counts.reference_valid >= MIN_VALID_FRACTION * counts.reference_total
            )
            keep_m = (counts.mapped_total == 0) | (counts.mapped_valid >= MIN_VALID_FRACTION * counts.mapped_total)
        ref_kept = [g for g, k in zip(reference, keep_r, strict=True) if k]
        map_kept = [g for g, k in zip(mapped, keep_m, strict=True) if k]
        match = match_objects(ref_kept, map_kept, p.iou_threshold)
        r_area, unit, _ = _area_m2(ref_kept, crs)
        m_area, _, _ = _area_m2(map_kept, crs)
        objects = object_scores(match.found, r_area, match.true, m_area, list(p.size_classes), unit)
        result = {
            'scene': s.stem, 'map': str(s.map.path), 'reference': str(s.reference.path),
            'aoi': str(s.aoi.path) if s.aoi is not None else None,
            'crs': crs.to_string() if crs is not None else None, 'iou_threshold': p.iou_threshold,
            'pixels': pixels, 'objects': objects, 'areas': self._areas(m_area.sum(), r_area.sum(), unit),
            'left_out': {'reference': int((~keep_r).sum()), 'mapped': int((~keep_m).sum())},
            'unit': unit,
        }  # fmt: skip
        write_tables(out / f'{s.stem}.evaluation', [result], f'Evaluation: {s.stem}')
        self._polygons(out / f'{s.stem}.evaluation.gpkg', s, ref_kept, map_kept, match, r_area, m_area, unit)
        if p.quicklook:
            self._quicklook(out / f'{s.stem}.evaluation.png', s, ref_kept, map_kept, match, result)
        part = {'confusion': confusion, 'found': match.found, 'true': match.true, 'r_area': r_area, 'm_area': m_area,
                'unit': unit, 'left_out': result['left_out']}  # fmt: skip
        return result, part

    @staticmethod
    def _areas(mapped: float, reference: float, unit: str) -> dict[str, Any]:
        if unit != 'm²':
            return {'mapped_km2': None, 'reference_km2': None, 'error_km2': None,
                    'relative_error': (mapped - reference) / reference if reference else float('nan'),
                    'mapped_px': float(mapped), 'reference_px': float(reference)}  # fmt: skip
        return {'mapped_km2': mapped / 1e6, 'reference_km2': reference / 1e6, 'error_km2': (mapped - reference) / 1e6,
                'relative_error': (mapped - reference) / reference if reference else float('nan')}  # fmt: skip

    def _combine(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        p = self.params
        units = {x['unit'] for x in parts}
        unit = units.pop() if len(units) == 1 else 'mixed'
        cms = [x['confusion'] for x in parts if x['confusion'] is not None]
        pixels = None
        if cms:
            cm = np.sum(cms, axis=0)
            pixels = {**pixel_scores(cm), 'confusion': cm.tolist(), 'evaluated_pixels': int(cm.sum())}
        cat = {k: np.concatenate([x[k] for x in parts]) for k in ('found', 'true', 'r_area', 'm_area')}
        objects = object_scores(cat['found'], cat['r_area'], cat['true'], cat['m_area'], list(p.size_classes), unit)
        areas = self._areas(cat['m_area'].sum(), cat['r_area'].sum(), unit if unit == 'm²' else 'px²')
        left = {k: sum(x['left_out'][k] for x in parts) for k in ('reference', 'mapped')}
        return {'scene': 'all', 'scenes': len(parts), 'iou_threshold': p.iou_threshold, 'aoi': p.aoi and str(p.aoi),
                'pixels': pixels, 'objects': objects, 'areas': areas, 'left_out': left, 'unit': unit}  # fmt: skip

    @staticmethod
    def _polygons(path: Path, s: _Scene, ref: list[Any], mapped: list[Any], match: Any, r_area: np.ndarray,
                  m_area: np.ndarray, unit: str) -> None:  # fmt: skip
        from ..inference.polygons import pixel_grid_crs

        crs = s.alignment.crs
        crs_wkt = crs.to_wkt() if crs is not None else pixel_grid_crs(s.map.path.name)
        field = 'area_m2' if unit == 'm²' else 'area_px'

        def layer(geoms: list[Any], areas: np.ndarray, iou: np.ndarray, partners: np.ndarray, sel: np.ndarray) -> Any:
            idx = np.flatnonzero(sel)
            return [geoms[i] for i in idx], {'id': idx.astype(np.int64) + 1, field: areas[idx], 'iou': iou[idx],
                                             'partners': partners[idx]}  # fmt: skip

        write_polygon_layers(path, {
            'found': layer(ref, r_area, match.reference_iou, match.reference_partners, match.found),
            'missed': layer(ref, r_area, match.reference_iou, match.reference_partners, ~match.found),
            'false': layer(mapped, m_area, match.mapped_iou, match.mapped_partners, ~match.true),
            'true': layer(mapped, m_area, match.mapped_iou, match.mapped_partners, match.true),
        }, crs_wkt)  # fmt: skip

    @staticmethod
    def _quicklook(
        path: Path, s: _Scene, ref: list[Any], mapped: list[Any], match: Any, result: dict[str, Any]
    ) -> None:
        from ..inference.quicklook import Outlines, QuickLook, write_quicklook

        grid = s.alignment.grid.path if s.alignment.grid is not None else s.scene
        if grid is None:
            return
        o = result['objects']
        pix = result['pixels']
        iou = f', landslide IoU {pix["landslide_iou"]:.3f}' if pix else ''
        overlay, band, scale = None, 1, 1 / 254
        if s.map.kind == 'raster':
            from ..inference.raster import open_raster

            with open_raster(s.map.path) as src:
                names = list(src.descriptions)
                if 'landslide_probability' in names:
                    overlay, band = s.map.path, names.index('landslide_probability') + 1
                    scale = src.scales[band - 1] or scale
        look = QuickLook(
            title=f'{s.stem}: {o["found"]} of {o["reference"]} landslides found, {o["false"]} false of {o["mapped"]} '
            f'mapped', subtitle=f'object recall {o["recall"]:.3f}, precision {o["precision"]:.3f}, F1 {o["f1"]:.3f} '
            f'(IoU >= {result["iou_threshold"]}){iou}', scene=s.scene, rgb_bands=_rgb_bands(s.scene, s.map.path),
            overlay=overlay, overlay_band=band, overlay_scale=scale,
            outlines=[Outlines([g for g, f in zip(ref, match.found, strict=True) if f], 'lime', 'found ({n})'),
                      Outlines([g for g, f in zip(ref, match.found, strict=True) if not f], 'deepskyblue',
                               'missed ({n})'),
                      Outlines([g for g, t in zip(mapped, match.true, strict=True) if not t], 'red', 'false ({n})')],
        )  # fmt: skip
        write_quicklook(path, look, grid)


def _rgb_bands(scene: Path | None, map_path: Path) -> list[int] | None:
    """Red, green, blue of a scene: from its colour interpretation, the bands recorded in ``map``'s COG, or 1-2-3."""
    if scene is None:
        return None
    import rasterio
    from rasterio.enums import ColorInterp

    from ..inference.raster import open_raster

    with open_raster(scene) as src:
        interp = list(src.colorinterp)
        count = src.count
    order = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    if all(c in interp for c in order):
        return [interp.index(c) + 1 for c in order]
    try:
        with rasterio.open(map_path) as m:
            bands = m.tags().get('bands', '').split(',')
    except Exception:
        bands = []
    if len(bands) == count and all(c in bands for c in ('red', 'green', 'blue')):
        return [bands.index(c) + 1 for c in ('red', 'green', 'blue')]
    return [1, 2, 3] if count >= 3 else [1]


def evaluate(params: EvaluateParams) -> dict[str, Any]:
    """Evaluate maps against a reference inventory (see :class:`EvaluateParams` and the module docstring).

    Returns:
        ``{'scenes': [per-scene results], 'all': the overall result}``; each result holds ``pixels`` (the training
        metrics and the confusion matrix, or ``None``), ``objects`` (counts, recall, precision, F1, size classes),
        ``areas`` (mapped and reference km², their difference) and ``left_out``.

    Raises:
        SAMCFFNetError: bad input or an existing output, before any work.
    """
    return Evaluation(params).run()
