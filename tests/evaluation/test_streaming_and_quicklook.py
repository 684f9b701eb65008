"""``evaluate``: memory flat in the scene size, refusals of inputs that cannot be compared (one line, exit 2, through
the CLI), and the quick-look's outlines (found green, missed blue, false red) where the objects are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
from affine import Affine
from PIL import Image
from test_user_errors import assert_user_error, run_cli

from evaluation.test_objects import CRS, REFERENCE, TRANSFORM, _write_map, _write_reference
from sam_cffnet.cli import main
from sam_cffnet.errors import SAMCFFNetError
from sam_cffnet.evaluation import EvaluateParams, evaluate


# ---------------------------------------------------------------------------------------------- memory
def _label_raster(path: Path, tiles: int) -> tuple[Path, Path]:
    """A ``tiles * 512`` px square label raster (1 m, UTM) holding two landslides per 512 px cell, and a GeoPackage
    inventory with the first of each pair only (so every scene has found and false objects)."""
    size = 512 * tiles
    t = Affine(1.0, 0.0, 500_000.0, 0.0, -1.0, 3_000_000.0 + size)
    boxes = []
    for i in range(tiles):
        for j in range(tiles):
            x, y = 500_000.0 + 512 * j, 3_000_000.0 + 512 * i
            boxes += [shapely.box(x + 100, y + 100, x + 160, y + 150), shapely.box(x + 300, y + 300, x + 340, y + 330)]
    mask = rasterio.features.rasterize([(b, 1) for b in boxes], out_shape=(size, size), transform=t, dtype='uint8')
    profile = {'driver': 'GTiff', 'height': size, 'width': size, 'count': 1, 'dtype': 'uint8', 'crs': CRS,
               'transform': t, 'nodata': 255, 'tiled': True, 'blockxsize': 256, 'blockysize': 256,
               'compress': 'deflate'}  # fmt: skip
    with rasterio.open(path, 'w', **profile) as dst:
        dst.write(mask[None])
    inventory = path.with_suffix('.gpkg')
    gpd.GeoDataFrame(geometry=boxes[::2], crs=CRS).to_file(inventory)
    return path, inventory


MEMORY_WORKER = """
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from sam_cffnet.evaluation import EvaluateParams, evaluate
def status(key):
    return int(next(l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith(key)).split()[1])
out, scene, reference, warm, warm_reference = sys.argv[1:6]
evaluate(EvaluateParams([warm], [warm_reference], out + '/warm', block_size=512))  # imports, not the scene
Path('/proc/self/clear_refs').write_text('5')
before = status('VmRSS')
result = evaluate(EvaluateParams([scene], [reference], out + '/run', block_size=512))
print(json.dumps({'before_kib': before, 'peak_kib': status('VmHWM'), 'objects': result['all']['objects']}))
"""


@pytest.mark.skipif(not Path('/proc/self/clear_refs').exists(), reason='needs Linux /proc peak-RSS reset')
def test_peak_memory_is_flat_when_the_scene_grows_16x(tmp_path: Path) -> None:
    small = _label_raster(tmp_path / 'small.tif', 2)  # 1024 px
    large = _label_raster(tmp_path / 'large.tif', 8)  # 4096 px: 16x the pixels
    peaks = {}
    for name, (scene, inventory) in (('small', small), ('large', large)):
        (tmp_path / name).mkdir()
        run = subprocess.run(
            [sys.executable, '-c', MEMORY_WORKER, str(tmp_path / name), str(scene), str(inventory), *map(str, small)],
            capture_output=True, text=True, timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'},
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        result = json.loads(run.stdout.strip().splitlines()[-1])
        peaks[name] = (result['peak_kib'] - result['before_kib']) / 1024
        cells = (2 if name == 'small' else 8) ** 2
        o = result['objects']
        assert (o['reference'], o['found'], o['mapped'], o['true'], o['false']) == (cells, cells, 2 * cells, cells,
                                                                                    cells)  # fmt: skip
    # Holding the large scene (labels, masks, two int32 object-id rasters, int64 indexes: ~19 bytes a pixel) would
    # take ~300 MiB more; what grows is the polygons and the GDAL block cache of one scene's compressed tiles.
    whole_scene = 4096 * 4096 * 19 / 2**20
    assert peaks['large'] - peaks['small'] < 0.25 * whole_scene, peaks


# ---------------------------------------------------------------------------------------------- refusals
def test_inputs_that_cannot_be_compared_are_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two rasters without a CRS of different sizes (through ``python -m sam_cffnet``); a raster without a CRS and
    polygons in one, an empty inventory (through the same entry in-process). Nothing is written."""
    a = np.zeros((60, 80), np.uint8)
    a[10:30, 10:30] = 1
    Image.fromarray(a).save(tmp_path / 'map.png')
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / 'ref.png')
    gpd.GeoDataFrame(geometry=[shapely.box(10, 10, 30, 30)], crs=CRS).to_file(tmp_path / 'utm.gpkg')
    gpd.GeoDataFrame(geometry=[], crs=CRS).to_file(tmp_path / 'empty.gpkg')
    out = ['--output-dir', str(tmp_path / 'out')]
    cases = [
        (['--reference', 'ref.png'], ['map.png (60 x 80 px)', 'ref.png (64 x 64 px)', 'no CRS and different sizes']),
        (['--reference', 'utm.gpkg'], ['map.png has no CRS', 'utm.gpkg is in EPSG:32648']),
        (['--reference', 'empty.gpkg'], ['empty.gpkg', 'empty inventory']),
    ]
    (args, named), *rest = cases
    assert_user_error(run_cli('evaluate', '--input', 'map.png', *args, *out, cwd=tmp_path), *named)
    monkeypatch.chdir(tmp_path)
    for args, named in rest:  # the same entry, in-process
        with pytest.raises(SAMCFFNetError) as info:
            main(['evaluate', '--input', 'map.png', *args, *out])
        assert all(text in str(info.value) for text in named) and '\n' not in str(info.value), str(info.value)
    assert not (tmp_path / 'out').exists()


# ---------------------------------------------------------------------------------------------- quick-look
def _grey_scene(path: Path) -> Path:
    """A grey RGB scene (R = G = B, noise) on the grid of test_objects: no saturated colour of its own."""
    grey = np.random.default_rng(0).integers(60, 200, (100, 100), dtype=np.uint8)
    profile = {'driver': 'GTiff', 'height': 100, 'width': 100, 'count': 3, 'dtype': 'uint8', 'crs': CRS,
               'transform': TRANSFORM}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with rasterio.open(path, 'w', **profile) as dst:
            dst.write(np.stack([grey] * 3))
    return path


def _colour_pixels(png: Path) -> dict[str, int]:
    rgb = np.asarray(Image.open(png).convert('RGB')).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return {
        'green': int(((g > 200) & (r < 60) & (b < 60)).sum()),  # lime (0, 255, 0)
        'blue': int(((b > 200) & (g > 140) & (g < 230) & (r < 60)).sum()),  # deepskyblue (0, 191, 255)
        'red': int(((r > 200) & (g < 60) & (b < 60)).sum()),  # red (255, 0, 0)
    }


def test_quicklook_outlines_found_green_missed_blue_false_red(tmp_path: Path) -> None:
    """The hand-computed case (4 found, D missed, F false) against the same scene mapped perfectly (nothing missed,
    nothing false): the outlines of D (blue) and F (red) add their colours; the legend alone has a little of each."""
    ref = _write_reference(tmp_path / 'inventory.geojson')
    scene = _grey_scene(tmp_path / 'scene.tif')
    (tmp_path / 'perfect').mkdir()
    perfect = tmp_path / 'perfect' / 'map.tif'
    with rasterio.open(_write_map(tmp_path / 'map.tif')) as src:
        profile = src.profile
    mask = rasterio.features.rasterize([(g, 1) for g in REFERENCE.values()], out_shape=(100, 100), transform=TRANSFORM)
    with rasterio.open(perfect, 'w', **profile) as dst:
        dst.write(mask.astype(np.uint8)[None])
    colours = {}
    for name, mapped in (('case', tmp_path / 'map.tif'), ('perfect', perfect)):
        result = evaluate(EvaluateParams([mapped], [ref], tmp_path / f'out_{name}', scenes=[scene]))
        o = result['scenes'][0]['objects']
        assert (o['missed'], o['false']) == ((1, 1) if name == 'case' else (0, 0))
        colours[name] = _colour_pixels(tmp_path / f'out_{name}' / 'map.evaluation.png')
    case, perfect_colours = colours['case'], colours['perfect']
    assert case['green'] > 500 and perfect_colours['green'] > 500, colours  # A, B, C1, C2 (and D when perfect)
    assert case['red'] > perfect_colours['red'] + 100, colours  # F's outline: 10 x 10 m, ~ 90 px a side
    assert case['blue'] > perfect_colours['blue'] + 40, colours  # D's outline: 3 x 3 m


def test_quicklook_scene_shows_through_a_certain_landslide(tmp_path: Path) -> None:
    """Under probability 1 (the most opaque overlay) a black and a white half of the scene stay told apart: a person
    checks a mapped landslide against the imagery under it."""
    from sam_cffnet.inference.quicklook import QuickLook, write_quicklook

    half = np.zeros((100, 100), np.uint8)
    half[:, 50:] = 255
    profile = {'driver': 'GTiff', 'height': 100, 'width': 100, 'dtype': 'uint8', 'crs': CRS, 'transform': TRANSFORM}
    with rasterio.open(tmp_path / 'scene.tif', 'w', count=3, **profile) as dst:
        dst.write(np.stack([half] * 3))
    with rasterio.open(tmp_path / 'probability.tif', 'w', count=1, **profile) as dst:
        dst.write(np.full((1, 100, 100), 254, np.uint8))
    look = QuickLook('halves', scene=tmp_path / 'scene.tif', rgb_bands=[1, 2, 3], overlay=tmp_path / 'probability.tif',
                     overlay_scale=1 / 254)  # fmt: skip
    png = write_quicklook(tmp_path / 'look.png', look, tmp_path / 'probability.tif')
    grey = np.asarray(Image.open(png).convert('L')).astype(int)
    row = grey[grey.shape[0] // 2]
    # the axes span the middle of the picture: sample a quarter and three quarters of the way across the scene
    inside = np.flatnonzero((row > 0) & (row < 255))
    left, right = row[inside[len(inside) // 4]], row[inside[3 * len(inside) // 4]]
    assert right - left > 90, (left, right)
