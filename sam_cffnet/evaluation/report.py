"""The outputs of ``evaluate``: Markdown, CSV and JSON tables (per scene and overall), a GeoPackage of polygons.

The GeoPackage holds the found / missed / false polygons.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..inference.raster import write_error

__all__ = ['PIXEL_COLUMNS', 'markdown', 'write_polygon_layers', 'write_tables']

PathLike = str | os.PathLike[str]

#: The pixel metrics shown in the tables (all of :func:`sam_cffnet.metrics.metrics_from_confusion` are in the JSON).
PIXEL_COLUMNS = ('landslide_iou', 'landslide_f1', 'landslide_precision', 'landslide_recall', 'miou', 'macro_f1',
                 'overall_accuracy')  # fmt: skip
OBJECT_COLUMNS = ('reference', 'found', 'missed', 'mapped', 'true', 'false', 'recall', 'precision', 'f1')
AREA_COLUMNS = ('mapped_km2', 'reference_km2', 'error_km2', 'relative_error')


def _fmt(value: Any) -> str:
    if value is None:
        return '-'
    if isinstance(value, float):
        return 'nan' if math.isnan(value) else f'{value:.4f}'
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return '\n'.join(lines + ['| ' + ' | '.join(_fmt(v) for v in row) + ' |' for row in rows])


def _row(result: dict[str, Any]) -> dict[str, Any]:
    """One flat CSV row of a result."""
    row: dict[str, Any] = {'scene': result['scene']}
    pixels = result.get('pixels') or {}
    row.update({f'pixel_{k}': pixels.get(k) for k in PIXEL_COLUMNS})
    row['pixel_evaluated'] = pixels.get('evaluated_pixels')
    row.update({f'object_{k}': result['objects'][k] for k in OBJECT_COLUMNS})
    row.update({f'area_{k}': result['areas'][k] for k in AREA_COLUMNS})
    row['iou_threshold'] = result['iou_threshold']
    return row


def markdown(results: Sequence[dict[str, Any]], title: str) -> str:
    """The Markdown report: pixel table, object table, size classes of the last result (``all`` when several)."""
    out = [f'# {title}', '']
    last = results[-1]
    out += [f'Matching: object IoU >= {last["iou_threshold"]} (see docs/evaluate.md); pixel scores over pixels with '
            'data on both sides' + (' inside the area of interest' if last.get('aoi') else '') + '.', '']  # fmt: skip
    with_pixels = [r for r in results if r.get('pixels')]
    if with_pixels:
        out += ['## Pixels', '', _table(['scene', *PIXEL_COLUMNS, 'pixels'], [
            [r['scene'], *[r['pixels'][k] for k in PIXEL_COLUMNS], r['pixels']['evaluated_pixels']]
            for r in with_pixels]), '']  # fmt: skip
    else:
        out += ['## Pixels', '', 'No pixel scores: neither the map nor the reference is a raster.', '']
    out += ['## Objects', '', _table(['scene', *OBJECT_COLUMNS, 'mapped km²', 'reference km²', 'area error km²',
                                      'relative'], [
        [r['scene'], *[r['objects'][k] for k in OBJECT_COLUMNS], *[r['areas'][k] for k in AREA_COLUMNS]]
        for r in results]), '']  # fmt: skip
    left = last.get('left_out') or {}
    if any(left.values()):
        out += [f'Left out (mostly on nodata): {left.get("reference", 0)} reference landslide(s), '
                f'{left.get("mapped", 0)} mapped polygon(s).', '']  # fmt: skip
    out += [f'## Size classes ({last["scene"]})', '', _table(
        ['class', 'reference', 'found', 'recall', 'mapped', 'true', 'precision', 'f1'],
        [[c['class'], c['reference'], c['found'], c['recall'], c['mapped'], c['true'], c['precision'], c['f1']]
         for c in last['objects']['size_classes']]), '']  # fmt: skip
    return '\n'.join(out)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def write_tables(stem: Path, results: Sequence[dict[str, Any]], title: str) -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.json`` (NaN -> empty cell / null)."""
    rows = [_row(r) for r in results]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator='\n')
    writer.writeheader()
    for row in rows:
        writer.writerow({k: '' if v is None or (isinstance(v, float) and math.isnan(v)) else v for k, v in row.items()})
    texts = {
        '.md': markdown(results, title) + '\n',
        '.csv': buffer.getvalue(),
        '.json': json.dumps(_json_safe(list(results) if len(results) > 1 else results[0]), indent=2) + '\n',
    }
    paths = []
    for suffix, text in texts.items():
        path = stem.with_name(stem.name + suffix)
        try:
            path.write_text(text, encoding='utf-8')
        except OSError as err:
            raise write_error(err, path) from err
        paths.append(path)
    return paths


def write_polygon_layers(path: Path, layers: dict[str, tuple[list[Any], dict[str, np.ndarray]]], crs_wkt: str) -> None:
    """A GeoPackage with one layer per entry: ``name -> (polygons, {field: values})``, empty layers included."""
    import pyogrio
    import shapely

    path.unlink(missing_ok=True)
    try:
        for name, (geoms, fields) in layers.items():
            geoms = [shapely.geometry.MultiPolygon([g]) if g.geom_type == 'Polygon' else g for g in geoms]
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', RuntimeWarning)
                pyogrio.raw.write(
                    path, geometry=np.array(shapely.to_wkb(geoms) if geoms else [], dtype=object),
                    field_data=list(fields.values()), fields=list(fields), geometry_type='MultiPolygon', crs=crs_wkt,
                    driver='GPKG', layer=name, append=path.exists(),
                )  # fmt: skip
    except Exception as err:
        path.unlink(missing_ok=True)
        raise write_error(err, path) from err
