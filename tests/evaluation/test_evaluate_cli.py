"""``python -m sam_cffnet evaluate`` through the real CLI on the worked example of docs/own_data.md (generated
inventory: UTM scenes with a nodata collar, EPSG:4326 polygons), after ``map``; bad input as one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
from conftest import load_fake_data_generator
from PIL import Image
from test_user_errors import assert_user_error, run_cli

from sam_cffnet.cli import main
from sam_cffnet.errors import DataError, MissingFileError, OutputExistsError

MAP_FLAGS = ['--tile-size', '64', '--overlap', '16', '--batch-size', '4', '--trainer.accelerator', 'cpu', '--quiet',
             '--num-workers', '0']  # fmt: skip


@pytest.fixture(scope='module')
def area(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two 192 px scenes with 6 landslides each, and label-raster 'maps' made from the inventory with the first
    landslide of each scene left out (so each scene has exactly one missed landslide and no false one)."""
    root = tmp_path_factory.mktemp('evaluate')
    data = load_fake_data_generator('inventory').make_inventory(root / 'area', scenes=2, size=192,
                                                                 landslides_per_scene=6)  # fmt: skip
    frame = data['polygons']
    maps = root / 'maps'
    maps.mkdir()
    for k, scene in enumerate(data['images']):
        with rasterio.open(scene) as src:
            profile, valid = src.profile, src.dataset_mask() > 0
            mine = [g for g in frame.geometry if g.within(shapely.box(*src.bounds))]
            mask = rasterio.features.rasterize([(g, 1) for g in mine[1:]], out_shape=valid.shape,
                                               transform=src.transform).astype(np.uint8)  # fmt: skip
        mask[~valid] = 255
        profile.update(count=1, dtype='uint8', nodata=255)
        with rasterio.open(maps / f'scene_{k}.tif', 'w', **profile) as dst:
            dst.write(mask[None])
    return {**data, 'root': root, 'maps': maps}


def test_evaluate_the_worked_example_through_the_cli(area: dict[str, Any], tmp_path: Path) -> None:
    scenes = ' '.join(area['images'])
    out = tmp_path / 'evaluation'
    run = run_cli('evaluate', '--input', str(area['maps'] / '*.tif'), '--reference', area['labels'], '--output-dir',
                  str(out), '--scene', *scenes.split(), cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert '| scene | landslide_iou |' in run.stdout and '| all |' in run.stdout
    overall = json.loads((out / 'evaluation.json').read_text())
    assert [s['scene'] for s in overall[:2]] == ['scene_0', 'scene_1'] and overall[2]['scene'] == 'all'
    objects = overall[2]['objects']
    assert (objects['reference'], objects['found'], objects['missed']) == (12, 10, 2)
    assert objects['recall'] == pytest.approx(10 / 12) and objects['true'] == 10
    # rasterizing the inventory may cut off a diagonal pixel: such specks are false detections, and nothing else is
    specks = [gpd.read_file(out / f'scene_{k}.evaluation.gpkg', layer='false') for k in (0, 1)]
    assert objects['false'] == sum(len(f) for f in specks) and all((f['area_m2'] <= 12).all() for f in specks)
    pixels = overall[2]['pixels']
    assert pixels['landslide_precision'] == 1.0 and 0.5 < pixels['landslide_recall'] < 1
    assert {'landslide_iou', 'miou', 'macro_f1', 'landslide_f1', 'overall_accuracy'} <= set(pixels)
    assert overall[2]['areas']['reference_km2'] > overall[2]['areas']['mapped_km2'] > 0
    for name in ('scene_0', 'scene_1'):
        assert {p.name for p in out.glob(f'{name}.evaluation.*')} == {
            f'{name}.evaluation.{x}' for x in ('md', 'csv', 'json', 'gpkg', 'png')}  # fmt: skip
        missed = gpd.read_file(out / f'{name}.evaluation.gpkg', layer='missed')
        assert len(missed) == 1 and missed.crs.to_epsg() == 32648
        assert Image.open(out / f'{name}.evaluation.png').size[0] > 500
    assert (out / 'evaluation.csv').read_text().splitlines()[0].startswith('scene,pixel_landslide_iou,')
    again = run_cli('evaluate', '--input', str(area['maps'] / '*.tif'), '--reference', area['labels'],
                    '--output-dir', str(out), cwd=tmp_path)  # fmt: skip
    assert_user_error(again, 'exists', '--overwrite')


def test_map_then_evaluate_finds_the_scene_and_draws_both_quicklooks(
    area: dict[str, Any], checkpoint: Path, tmp_path: Path
) -> None:
    """``map`` (tiny random model) writes a quick-look by default, ``--no-quicklook`` skips it; ``evaluate`` of the
    COG finds the scene through the map's summary JSON."""
    scene = area['images'][1]
    cog = tmp_path / 'scene_1_map.tif'
    assert main(['map', '--checkpoint', str(checkpoint), '--input', scene, '--output', str(cog), '--polygons',
                 'gpkg', *MAP_FLAGS]) == 0  # fmt: skip
    quicklook = tmp_path / 'scene_1_map.quicklook.png'
    assert quicklook.is_file() and Image.open(quicklook).size[0] > 500
    assert json.loads((tmp_path / 'scene_1_map.summary.json').read_text())['quicklook'] == str(quicklook)
    bare = tmp_path / 'bare.tif'
    assert main(['map', '--checkpoint', str(checkpoint), '--input', scene, '--output', str(bare), '--no-quicklook',
                 *MAP_FLAGS]) == 0  # fmt: skip
    assert not (tmp_path / 'bare.quicklook.png').exists()
    assert main(['evaluate', '--input', str(cog), '--reference', area['labels'], '--output-dir',
                 str(tmp_path / 'ev')]) == 0  # fmt: skip
    result = json.loads((tmp_path / 'ev' / 'scene_1_map.evaluation.json').read_text())
    assert result['objects']['reference'] == 6 and result['pixels']['evaluated_pixels'] == 192 * 192
    assert (tmp_path / 'ev' / 'scene_1_map.evaluation.png').is_file()


def test_bad_input_is_one_line(area: dict[str, Any], tmp_path: Path) -> None:
    gen = load_fake_data_generator('inventory')
    label = area['maps'] / 'scene_0.tif'
    empty = gen.write_vector(tmp_path / 'empty.gpkg', [], 'EPSG:32648')
    far = gen.write_vector(tmp_path / 'far.geojson', [shapely.box(10.0, 45.0, 10.01, 45.01)], 'EPSG:4326')
    bare = gen.write_vector(tmp_path / 'bare.gpkg', [shapely.box(0, 0, 10, 10)], None)
    out = ['--output-dir', str(tmp_path / 'out')]
    cases = [
        (DataError, 'empty inventory', ['--reference', str(empty)]),
        (DataError, 'do not overlap', ['--reference', str(far)]),
        (DataError, 'has no CRS', ['--reference', str(bare)]),
        (MissingFileError, 'no such file', ['--reference', str(tmp_path / 'nowhere.gpkg')]),
    ]
    for error, text, args in cases:
        with pytest.raises(error, match=text):
            main(['evaluate', '--input', str(label), *args, *out])
    assert not (tmp_path / 'out').exists()  # refused before any work
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'evaluation.md').write_text('mine')
    with pytest.raises(OutputExistsError, match='--overwrite'):
        main(['evaluate', '--input', str(label), '--reference', area['labels'], *out])
    assert (tmp_path / 'out' / 'evaluation.md').read_text() == 'mine'
    line = assert_user_error(run_cli('evaluate', '--input', str(label), '--reference', str(far), *out, cwd=tmp_path),
                             'far.geojson', 'do not overlap')  # fmt: skip
    assert 'wrong CRS' in line
