"""Polygons: merged across block seams, written in the scene's CRS, named after the output, never as lon/lat."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely

from sam_cffnet.errors import ConfigError
from sam_cffnet.inference import map_scene, vectorize_mask
from sam_cffnet.inference.polygons import mask_polygons, merge_polygons, split_at_seams
from sam_cffnet.inference.windows import ScenePlan

from .conftest import PixelModel, rgb_preprocessing, write_geotiff

FAST = {'tile_size': 64, 'overlap': 16, 'batch_size': 2, 'progress': False}


def _by_blocks(mask: np.ndarray, block: int) -> list:
    plan = ScenePlan(*mask.shape, tile=16, overlap=0, block_size=block)
    interior, seam = [], []
    for b in plan.blocks():
        i, s = split_at_seams(mask_polygons(mask[b.y0 : b.y1, b.x0 : b.x1], b.y0, b.x0), b, *mask.shape)
        interior += i
        seam += s
    return merge_polygons(interior, seam)


def test_landslide_across_block_seams_is_one_polygon() -> None:
    mask = np.zeros((64, 64), bool)
    mask[5:50, 10:20] = True  # crosses the row seams at 16, 32, 48
    mask[20:24, 10:60] = True  # and the column seams: one L-shaped landslide with a hole-free outline
    mask[40:44, 40:44] = True  # a separate one inside a block
    mask[44:46, 44:46] = True  # touches the previous only at a corner: 4-connectivity keeps it apart
    whole = mask_polygons(mask)
    merged = _by_blocks(mask, 16)
    assert len(merged) == len(whole) == 3
    for a, b in zip(sorted(whole, key=lambda p: p.area), sorted(merged, key=lambda p: p.area), strict=True):
        assert a.area == b.area and a.symmetric_difference(b).area == 0


def test_vectorize_merges_across_blocks_and_filters_area(tmp_path: Path) -> None:
    mask = np.zeros((1, 40, 40), np.uint8)
    mask[0, 5:25, 5:25] = 1  # 400 px, crosses the 16 px block borders
    mask[0, 30:32, 30:32] = 1  # 4 px
    mask[0, 35:, 35:] = 255  # nodata is not landslide
    path = write_geotiff(tmp_path / 'mask.tif', mask, nodata=255)
    vec = tmp_path / 'poly.gpkg'
    assert vectorize_mask(path, vec, min_area=0, block=16) == 2
    assert vectorize_mask(path, vec, min_area=5 * 4, block=16) == 1  # 2 m pixels: 5 px = 20 m^2
    _, _, geometry, fields = pyogrio.raw.read(vec)
    assert fields[1][0] == pytest.approx(400 * 4) and fields[2][0] == pytest.approx(400)
    assert fields[3][0] == pytest.approx(400 * 4 / 1e6)  # area_km2 (UTM: metres)
    poly = shapely.from_wkb(geometry[0])
    assert poly.geom_type == 'Polygon' and poly.bounds == (500_010.0, 2_999_950.0, 500_050.0, 2_999_990.0)
    empty = write_geotiff(tmp_path / 'empty.tif', np.zeros((1, 8, 8), np.uint8))
    assert vectorize_mask(empty, tmp_path / 'empty.geojson') == 0
    assert pyogrio.read_info(tmp_path / 'empty.geojson')['features'] == 0


def test_mapped_landslide_across_block_seams_is_one_polygon_named_after_the_output(tmp_path: Path) -> None:
    """Through map: a bright region spanning many blocks is one polygon; GeoJSON's layer is the output's name."""
    img = np.full((3, 150, 200), 40, np.uint8)
    img[:, 30:120, 20:170] = 230  # the 'landslide' of the pixel model, crossing every block seam (blocks of 48 px)
    src = write_geotiff(tmp_path / 'scene.tif', img)
    out, vec = tmp_path / 'map.tif', tmp_path / 'slides.geojson'
    summary = map_scene(PixelModel(), src, out, preprocessing=rgb_preprocessing(), polygons_path=vec, block_size=48,
                        **FAST)  # fmt: skip
    assert summary['blocks'] > 9 and summary['num_polygons'] == 1
    geojson = json.loads(vec.read_text())
    assert geojson['name'] == 'slides'  # not the temporary file's name
    assert len(geojson['features']) == 1
    props = geojson['features'][0]['properties']
    assert props['area_px'] == 90 * 150 and props['area'] == pytest.approx(90 * 150 * 4)
    assert summary['landslide_pixels'] == 90 * 150 and summary['landslide_area_km2'] == pytest.approx(0.054)


def test_scene_without_crs_never_gives_lonlat_polygons(tmp_path: Path) -> None:
    img = np.full((3, 70, 90), 40, np.uint8)
    img[:, 10:40, 20:60] = 230
    src = write_geotiff(tmp_path / 'site.tif', img, crs=None, transform=None)
    with pytest.raises(ConfigError, match=r'site\.tif has no CRS .* \.gpkg'):  # GeoJSON means lon/lat: refused
        map_scene(PixelModel(), src, tmp_path / 'a.tif', preprocessing=rgb_preprocessing(),
                  polygons_path=tmp_path / 'a.geojson', **FAST)  # fmt: skip
    assert not list(tmp_path.glob('*a.*'))  # refused before any work: no output, no state
    map_scene(PixelModel(), src, tmp_path / 'b.tif', preprocessing=rgb_preprocessing(),
              polygons_path=tmp_path / 'b.gpkg', **FAST)  # fmt: skip
    info = pyogrio.read_info(tmp_path / 'b.gpkg')
    assert 'pixel grid of site.tif' in info['crs'] and 'pixel' in info['crs'].lower()
    assert info['features'] == 1 and info['total_bounds'] == (20.0, 10.0, 60.0, 40.0)  # column, row
