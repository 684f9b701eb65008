"""Object matching and pixel scores on hand-computed cases: a landslide half-found, two mapped polygons covering one
landslide, one mapped polygon covering two, a missed small one, a false detection, and a nodata area.

Local coordinates in metres (x east, y north) on a 100 x 100 grid of 1 m pixels (EPSG:32648); every box has
integer corners, so rasterized areas are the boxes' areas exactly.

=============  ========================  ===========================================================
reference      mapped                    by hand
=============  ========================  ===========================================================
A 20 x 20      A' = left half of A       IoU 200 / 400 = 0.5: found at t = 0.5, missed at t = 0.6
B 20 x 20      B1, B2: B less a 2 m gap  B: IoU 360 / 400 = 0.9 found; B1: 180 / (B less B2 = 220)
C1, C2 15x20   M covers both + 5 m gap   C1: 300 / (M less C2 = 400) = 0.75; M: 600 / 700 = 0.857
D 3 x 3        -                         missed (IoU 0)
-              F 10 x 10                 false (IoU 0)
=============  ========================  ===========================================================
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
from affine import Affine

from sam_cffnet.evaluation import EvaluateParams, evaluate, match_objects, object_scores

X0, Y0 = 500_000.0, 3_000_000.0
CRS = 'EPSG:32648'
TRANSFORM = Affine(1.0, 0.0, X0, 0.0, -1.0, Y0 + 100)


def box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


REFERENCE = {'A': box(10, 10, 30, 30), 'B': box(40, 10, 60, 30), 'C1': box(10, 50, 25, 70), 'C2': box(30, 50, 45, 70),
             'D': box(80, 80, 83, 83)}  # fmt: skip
MAPPED = {"A'": box(10, 10, 20, 30), 'B1': box(40, 10, 49, 30), 'B2': box(51, 10, 60, 30), 'M': box(10, 50, 45, 70),
          'F': box(70, 40, 80, 50)}  # fmt: skip


def test_matching_rule_by_hand() -> None:
    m = match_objects(list(REFERENCE.values()), list(MAPPED.values()), 0.5)
    assert m.reference_iou == pytest.approx([0.5, 0.9, 0.75, 0.75, 0.0])
    assert m.mapped_iou == pytest.approx([0.5, 180 / 220, 180 / 220, 600 / 700, 0.0])
    assert m.found.tolist() == [True, True, True, True, False]  # the half-found landslide counts at t = 0.5
    assert m.true.tolist() == [True, True, True, True, False]
    assert m.reference_partners.tolist() == [1, 2, 1, 1, 0] and m.mapped_partners.tolist() == [1, 1, 1, 2, 0]
    strict = match_objects(list(REFERENCE.values()), list(MAPPED.values()), 0.6)
    assert strict.found.tolist() == [False, True, True, True, False]
    assert strict.true.tolist() == [False, True, True, True, False]


def test_object_scores_per_size_class() -> None:
    m = match_objects(list(REFERENCE.values()), list(MAPPED.values()), 0.5)
    r_area = np.array([g.area for g in REFERENCE.values()])
    m_area = np.array([g.area for g in MAPPED.values()])
    s = object_scores(m.found, r_area, m.true, m_area, [50, 350])
    assert (s['reference'], s['found'], s['missed'], s['mapped'], s['true'], s['false']) == (5, 4, 1, 5, 4, 1)
    assert s['recall'] == pytest.approx(0.8) and s['precision'] == pytest.approx(0.8) and s['f1'] == pytest.approx(0.8)
    small, mid, large = s['size_classes']
    assert small['class'] == '< 50 m²' and (small['reference'], small['found'], small['recall']) == (1, 0, 0.0)
    assert (mid['reference'], mid['found'], mid['mapped'], mid['true']) == (2, 2, 4, 3)  # A', B1, B2 true; F false
    assert mid['precision'] == pytest.approx(0.75)
    assert large['class'] == '>= 350 m²' and (large['reference'], large['found'], large['mapped']) == (2, 2, 1)


def _write_map(path: Path, nodata_box: shapely.Polygon | None = None) -> Path:
    mask = rasterio.features.rasterize([(g, 1) for g in MAPPED.values()], out_shape=(100, 100), transform=TRANSFORM)
    if nodata_box is not None:
        mask[rasterio.features.geometry_mask([nodata_box], (100, 100), TRANSFORM, invert=True)] = 255
    profile = {'driver': 'GTiff', 'height': 100, 'width': 100, 'count': 1, 'dtype': 'uint8', 'crs': CRS,
               'transform': TRANSFORM, 'nodata': 255}  # fmt: skip
    with rasterio.open(path, 'w', **profile) as dst:
        dst.write(mask.astype(np.uint8)[None])
    return path


def _write_reference(path: Path) -> Path:
    import geopandas as gpd

    gpd.GeoDataFrame({'name': list(REFERENCE)}, geometry=list(REFERENCE.values()), crs=CRS).to_crs('EPSG:4326').to_file(
        path
    )
    return path


def test_pixels_objects_and_areas_of_a_raster_map_against_polygons(tmp_path: Path) -> None:
    """Pixel confusion matrix by hand: TP = 200 + 360 + 600, FP = 100 (M's gap) + 100 (F), FN = 200 (A) + 40 (B's
    gap) + 9 (D); the reference travels through EPSG:4326 and back."""
    ref = _write_reference(tmp_path / 'inventory.geojson')
    result = evaluate(EvaluateParams([_write_map(tmp_path / 'map.tif')], [ref], tmp_path / 'out',
                                     size_classes=[50, 350], quicklook=False))  # fmt: skip
    scene = result['scenes'][0]
    assert scene['pixels']['confusion'] == [[10_000 - 1160 - 200 - 249, 200], [249, 1160]]
    assert scene['pixels']['landslide_iou'] == pytest.approx(1160 / 1609)
    assert scene['pixels']['landslide_precision'] == pytest.approx(1160 / 1360)
    o = scene['objects']
    assert (o['reference'], o['found'], o['mapped'], o['true']) == (5, 4, 5, 4)
    assert scene['areas']['mapped_km2'] == pytest.approx(1360e-6, rel=1e-6)
    assert scene['areas']['reference_km2'] == pytest.approx(1409e-6, rel=1e-4)  # through EPSG:4326 and back
    assert scene['areas']['error_km2'] == pytest.approx(-49e-6, abs=2e-7)
    import pyogrio

    layers = dict(pyogrio.list_layers(tmp_path / 'out' / 'map.evaluation.gpkg'))
    assert set(layers) == {'found', 'missed', 'false', 'true'}
    assert len(pyogrio.read_dataframe(tmp_path / 'out' / 'map.evaluation.gpkg', layer='missed')) == 1
    assert len(pyogrio.read_dataframe(tmp_path / 'out' / 'map.evaluation.gpkg', layer='false')) == 1
    table = json.loads((tmp_path / 'out' / 'evaluation.json').read_text())
    assert table['objects']['recall'] == pytest.approx(0.8)


def test_nodata_pixels_and_objects_on_nodata_are_left_out(tmp_path: Path) -> None:
    """A nodata square of 12 x 12 m over the small landslide D: its 144 pixels leave the confusion matrix (9 of them
    were D's, missed) and D leaves the object scores."""
    ref = _write_reference(tmp_path / 'inventory.geojson')
    mapped = _write_map(tmp_path / 'map.tif', nodata_box=box(78, 78, 90, 90))
    result = evaluate(EvaluateParams([mapped], [ref], tmp_path / 'out', quicklook=False))
    scene = result['scenes'][0]
    assert scene['pixels']['confusion'] == [[10_000 - 1160 - 200 - 249 - 135, 200], [240, 1160]]
    assert scene['pixels']['evaluated_pixels'] == 10_000 - 144
    assert scene['left_out'] == {'reference': 1, 'mapped': 0}
    assert scene['objects']['reference'] == 4 and scene['objects']['recall'] == 1.0
