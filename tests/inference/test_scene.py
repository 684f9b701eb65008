"""Whole-scene mapping: preprocessing parity, georeference, coverage, blending, nodata, errors, resume, CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch

from sam_cffnet.cli import main as cli_main
from sam_cffnet.datamodules import BijieDataModule, GVLMDataModule, Landslide4SenseDataModule
from sam_cffnet.errors import CheckpointError, ConfigError, DataError, MissingFileError, OutputExistsError
from sam_cffnet.inference import PROBABILITY_SCALE, InputRasterError, load_mapping_model, map_scene, window_inputs
from sam_cffnet.inference.windows import ScenePlan
from sam_cffnet.preprocessing import Preprocessing
from sam_cffnet.tasks.segmentation import SegmentationTask

from .conftest import CRS, TRANSFORM, PixelModel, random_rgb, read, rgb_preprocessing, write_geotiff

FAST = {'tile_size': 64, 'overlap': 16, 'batch_size': 2, 'progress': False}


def pixel_expected(img: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """What PixelModel gives on the whole image at once, encoded as the output's probability band."""
    with torch.no_grad():
        p = torch.sigmoid(PixelModel()(pre.normalize_image(torch.from_numpy(img)[None])))[0, 0].numpy()
    return np.rint(p.astype(np.float64) * PROBABILITY_SCALE).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- the inputs
@pytest.mark.parametrize(
    'dm',
    [
        BijieDataModule(root='unused'),
        GVLMDataModule(root='unused', normalization='dataset'),
        Landslide4SenseDataModule(root='unused', bands=['B2', 'B8', 'B11', 'B4'], normalization='dataset'),
        Landslide4SenseDataModule(root='unused', bands='rgb', normalization='reference'),
        BijieDataModule(root='unused', dem_mode='separate', normalization='dataset'),
        Landslide4SenseDataModule(root='unused', bands='rgb', dem_mode='band'),
    ],
    ids=['bijie-reference', 'gvlm-dataset', 'l4s-dataset', 'l4s-reference', 'bijie-dem-separate', 'l4s-dem-band'],
)
def test_mapping_inputs_are_the_training_inputs_bit_for_bit(dm: Any) -> None:
    """The same raw pixels through the training path (datamodule) and the mapping path (the pipeline restored from
    the checkpoint's JSON) give bit-identical model inputs."""
    restored = Preprocessing.from_dict(json.loads(json.dumps(dm.preprocessing.to_dict())))  # as in a checkpoint
    assert restored == dm.preprocessing
    t = dm.tile_size = 32
    raw = (torch.rand(2, len(dm.bands), t, t) * 300).numpy()
    batch = {'image': torch.from_numpy(raw.copy()), 'mask': torch.zeros(2, t, t, dtype=torch.long)}
    if dm.dem_mode != 'none':
        batch['dem'] = torch.rand(2, len(dm.dem_bands), t, t) * 1000
    training = dm.on_after_batch_transfer(batch, 0)
    mapping = window_inputs(
        restored.with_tile_size(t), raw, batch['dem'].numpy() if 'dem' in batch else None, np.ones((2, t, t), 'f4')
    )
    assert torch.equal(mapping['image'], training['image'])
    if 'dem' in training:
        assert torch.equal(mapping['dem'], training['dem'])


def test_reference_preprocessing_is_rgb_over_255() -> None:
    x = torch.randint(0, 256, (1, 3, 4, 4)).float()
    assert torch.allclose(Preprocessing.reference().normalize_image(x), x / 255)


def test_band_resolution() -> None:
    rgb = BijieDataModule(root='unused').preprocessing
    assert rgb.raster_band_indexes(3) == ([1, 2, 3], [])
    assert rgb.raster_band_indexes(4, alpha_last=True) == ([1, 2, 3], [])
    l4s = Landslide4SenseDataModule(root='unused', bands='rgb', dem_mode='band').preprocessing
    assert l4s.raster_band_indexes(5) == ([1, 2, 3], [4, 5])  # selected bands, then slope, dem
    assert l4s.raster_band_indexes(14) == ([4, 3, 2], [13, 14])  # the full L4S stack: B4, B3, B2 + slope, dem
    with pytest.raises(DataError, match=r'scene\.tif: the raster has 2 band'):
        rgb.raster_band_indexes(2, 'scene.tif')


# ---------------------------------------------------------------------------------------------- the real model
def test_single_window_identical_to_direct_prediction(task: SegmentationTask, tmp_path: Path) -> None:
    img = random_rgb(64, 64)
    src = write_geotiff(tmp_path / 'one.tif', img)
    summary = map_scene(task, src, tmp_path / 'out.tif', **FAST)
    assert summary['windows'] == 1
    out, _ = read(tmp_path / 'out.tif')
    with torch.no_grad():
        x = task.preprocessing.normalize_image(torch.from_numpy(img)[None])
        p = torch.sigmoid(task.model(x)[:, 0].float())[0].numpy()
    np.testing.assert_array_equal(out[0], np.rint(p.astype(np.float64) * PROBABILITY_SCALE).astype(np.uint8))
    np.testing.assert_array_equal(out[1], (p > 0.5).astype(np.uint8))


def test_geotiff_georeference_coverage_nodata_polygons_summary(task: SegmentationTask, tmp_path: Path) -> None:
    img = random_rgb(150, 200, seed=1)  # not a multiple of the tile size
    img[:, :20, :30] = 0  # nodata corner
    img[:, 100:110, 150:] = 0  # nodata stripe reaching the right edge
    src = write_geotiff(tmp_path / 'scene.tif', img, nodata=0)
    out_path, vec = tmp_path / 'map.tif', tmp_path / 'map.gpkg'
    summary = map_scene(task, src, out_path, polygons_path=vec, block_size=96, **FAST)
    out, meta = read(out_path)
    assert meta['crs'] == rasterio.crs.CRS.from_string(CRS) and meta['transform'] == TRANSFORM
    assert meta['shape'] == (150, 200) and out.shape == (2, 150, 200) and meta['nodata'] == 255
    assert meta['layout'] == 'COG' and meta['tiled'] and meta['compress'] == 'deflate'
    assert meta['descriptions'] == ('landslide_probability', 'landslide_mask')
    assert meta['scales'][0] == pytest.approx(1 / 254) and meta['tags']['source'] == 'scene.tif'
    nodata = (img == 0).all(0)
    assert (out[:, nodata] == 255).all()  # nodata stays nodata, never landslide
    assert (out[:, ~nodata] != 255).all()  # every other pixel predicted: the scene is covered completely
    assert (out[1][~nodata] == (out[0][~nodata] > 127)).mean() > 0.99  # mask = p > 0.5 (up to uint8 rounding)
    assert summary['valid_pixels'] == int((~nodata).sum())
    assert summary['landslide_pixels'] == int((out[1] == 1).sum())
    assert summary['landslide_area'] == pytest.approx(summary['landslide_pixels'] * 4)  # 2 m pixels
    assert summary['landslide_area_km2'] == pytest.approx(summary['landslide_pixels'] * 4 / 1e6)
    assert summary['blocks'] == 4 and summary['windows'] >= summary['windows_in_scene'] == 12
    assert json.loads((tmp_path / 'map.summary.json').read_text()) == summary
    info = __import__('pyogrio').read_info(vec)
    assert rasterio.crs.CRS.from_user_input(info['crs']) == rasterio.crs.CRS.from_string(CRS)
    assert info['layer_name'] == 'map' and info['features'] == summary['num_polygons'] > 0
    x0, y0, x1, y1 = info['total_bounds']
    assert 500_000 <= x0 <= x1 <= 500_400 and 2_999_700 <= y0 <= y1 <= 3_000_000
    expected = ['map.gpkg', 'map.quicklook.png', 'map.summary.json', 'map.tif', 'scene.tif']
    assert sorted(p.name for p in tmp_path.iterdir()) == expected


def test_png_input_keeps_pixel_grid(task: SegmentationTask, tmp_path: Path) -> None:
    rgba = np.concatenate([random_rgb(70, 90, seed=2), np.full((1, 70, 90), 255, np.uint8)])
    rgba[3, :10, :10] = 0  # transparent corner = nodata
    png = tmp_path / 'site.png'
    with rasterio.open(png, 'w', driver='PNG', height=70, width=90, count=4, dtype='uint8') as dst:
        dst.write(rgba)
    summary = map_scene(task, png, tmp_path / 'site.tif', write_mask=False, **FAST)
    out, meta = read(tmp_path / 'site.tif')
    assert meta['crs'] is None and meta['transform'] == rasterio.Affine.identity() and meta['shape'] == (70, 90)
    assert out.shape == (1, 70, 90)
    assert (out[0, :10, :10] == 255).all() and (out[0, 10:, 10:] != 255).all()
    assert summary['area_unit'] == 'pixel^2' and summary['landslide_area_km2'] is None


# ---------------------------------------------------------------------------------------------- blending, nodata
@pytest.mark.parametrize('block_size', [3072, 70, 40], ids=['one-block', 'blocks', 'small-blocks'])
def test_blending_is_seamless_and_exact_for_a_pixelwise_model(tmp_path: Path, block_size: int) -> None:
    pre = rgb_preprocessing()
    img = random_rgb(130, 190, seed=3)
    src = write_geotiff(tmp_path / 'scene.tif', img)
    summary = map_scene(PixelModel(), src, tmp_path / 'out.tif', preprocessing=pre, block_size=block_size, **FAST)
    assert (summary['blocks'] == 1) == (block_size > 190)
    out, _ = read(tmp_path / 'out.tif')
    diff = np.abs(out[0].astype(int) - pixel_expected(img, pre).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # blending = weighted mean of equal values: no seams


def test_windows_without_data_are_skipped(tmp_path: Path) -> None:
    img = random_rgb(200, 200, seed=4)
    img[:, :120, :] = 0  # the top 120 rows are nodata
    src = write_geotiff(tmp_path / 'scene.tif', img, nodata=0)
    model = PixelModel()
    summary = map_scene(model, src, tmp_path / 'out.tif', preprocessing=rgb_preprocessing(), **FAST)
    plan = ScenePlan(200, 200, 64, 16, 3072)
    empty = sum(1 for r in plan.rows for c in plan.cols if r + 64 <= 120)
    assert empty > 0 and summary['windows_skipped'] == empty
    assert summary['windows'] == plan.num_windows - empty
    (block,) = plan.blocks()
    with_data = [chunk for chunk in block.chunks(2) if any(r + 64 > 120 for r, _ in chunk)]
    assert model.calls == len(with_data) < len(block.chunks(2))  # chunks without data never reach the model
    out, _ = read(tmp_path / 'out.tif')
    assert (out[:, :120] == 255).all() and (out[:, 120:] != 255).all()


# ---------------------------------------------------------------------------------------------- errors
def test_clear_errors(tmp_path: Path) -> None:
    pre = rgb_preprocessing()
    text = tmp_path / 'notes.tif'
    text.write_text('not a raster')
    with pytest.raises(InputRasterError, match=r'notes\.tif: not a readable raster'):
        map_scene(PixelModel(), text, tmp_path / 'o.tif', preprocessing=pre, **FAST)
    two = write_geotiff(tmp_path / 'two.tif', random_rgb(32, 32)[:2])
    with pytest.raises(InputRasterError, match=r'two\.tif: the raster has 2 band\(s\) but the model was trained on 3'):
        map_scene(PixelModel(), two, tmp_path / 'o.tif', preprocessing=pre, **FAST)
    bad = tmp_path / 'bad.ckpt'
    bad.write_bytes(b'\x00garbage' * 10)
    with pytest.raises(CheckpointError, match=r'bad\.ckpt'):
        load_mapping_model(bad)
    with pytest.raises(MissingFileError, match=r'missing\.tif: input scene not found'):
        map_scene(PixelModel(), tmp_path / 'missing.tif', tmp_path / 'o.tif', preprocessing=pre, **FAST)
    three = write_geotiff(tmp_path / 'three.tif', random_rgb(32, 32))
    with pytest.raises(ConfigError, match='is an input scene'):
        map_scene(PixelModel(), three, three, preprocessing=pre, **FAST)
    existing = tmp_path / 'exists.tif'
    existing.write_bytes(b'keep me')
    with pytest.raises(OutputExistsError, match='overwrite'):
        map_scene(PixelModel(), three, existing, preprocessing=pre, **FAST)
    assert existing.read_bytes() == b'keep me'
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]  # refused before any state was created


# ---------------------------------------------------------------------------------------------- resume
def test_interrupted_run_leaves_no_output_and_resumes(tmp_path: Path) -> None:
    pre = rgb_preprocessing()
    img = random_rgb(150, 150)
    src = write_geotiff(tmp_path / 'scene.tif', img)
    args = {'preprocessing': pre, 'polygons_path': 'gpkg', 'block_size': 48, **FAST}  # out.gpkg next to out.tif
    full = map_scene(PixelModel(), src, tmp_path / 'full' / 'out.tif', **args)
    first = PixelModel(fail_after=12)
    with pytest.raises(RuntimeError, match='interrupted'):
        map_scene(first, src, tmp_path / 'out.tif', **args)
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith('.'))
    assert visible == ['full', 'scene.tif']  # nothing that looks like an output
    state = tmp_path / '.out.tif.map-state'
    done = list((state / 'scenes' / '0000' / 'blocks').glob('*.tif'))
    assert 0 < len(done) < full['blocks']
    again = PixelModel()
    summary = map_scene(again, src, tmp_path / 'out.tif', **args)  # the same call: finishes the missing blocks
    assert again.calls < -(-full['windows'] // 2)  # fewer forward passes than a run from scratch
    assert summary['windows'] == full['windows'] and not state.exists()
    np.testing.assert_array_equal(read(tmp_path / 'out.tif')[0], read(tmp_path / 'full' / 'out.tif')[0])
    assert (tmp_path / 'out.gpkg').read_bytes() != b'' and summary['num_polygons'] == full['num_polygons']


def test_another_runs_state_is_refused_unless_overwrite(tmp_path: Path) -> None:
    pre = rgb_preprocessing()
    src = write_geotiff(tmp_path / 'scene.tif', random_rgb(150, 150))
    with pytest.raises(RuntimeError, match='interrupted'):
        map_scene(PixelModel(fail_after=3), src, tmp_path / 'out.tif', preprocessing=pre, block_size=48, **FAST)
    other = {**FAST, 'overlap': 8}
    with pytest.raises(OutputExistsError, match=r'holds the state of another mapping run \(settings\.overlap: 16 != 8'):
        map_scene(PixelModel(), src, tmp_path / 'out.tif', preprocessing=pre, block_size=48, **other)
    summary = map_scene(PixelModel(), src, tmp_path / 'out.tif', preprocessing=pre, block_size=48, overwrite=True,
                        **other)  # fmt: skip
    assert summary['overlap'] == 8 and (tmp_path / 'out.tif').exists()


# ---------------------------------------------------------------------------------------------- checkpoint + CLI
@pytest.mark.filterwarnings('ignore:.*RANDOM weights')
def test_cli_map_from_checkpoint(checkpoint: Path, tmp_path: Path) -> None:
    src = write_geotiff(tmp_path / 'scene.tif', random_rgb(64, 80))
    out = tmp_path / 'out.tif'
    args = ['map', '--checkpoint', str(checkpoint), '--input', str(src), '--output', str(out), '--tile-size', '64',
            '--overlap', '16', '--batch-size', '2', '--trainer.precision', 'bf16-mixed', '--trainer.accelerator',
            'cpu', '--quiet', '--num-workers', '0', '--polygons', 'gpkg', '--min-area', '8']  # fmt: skip
    assert cli_main(args) == 0
    summary = json.loads((tmp_path / 'out.summary.json').read_text())
    assert summary['windows'] == 2 and summary['polygons'] == str(tmp_path / 'out.gpkg')
    _, meta = read(out)
    assert meta['shape'] == (64, 80) and meta['transform'] == TRANSFORM
    corrupt = tmp_path / 'corrupt.ckpt'
    shutil.copy(checkpoint, corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:1000])  # loading it would fail: the refusal must come first
    with pytest.raises(OutputExistsError, match=r'out\.tif exists; pass --overwrite'):
        cli_main([args[0], '--checkpoint', str(corrupt), *args[3:]])


@pytest.mark.parametrize(
    ('flag', 'expected'),
    [('--checkpoint', 'sam_cffnet training checkpoint'), ('--reference-checkpoint', "authors' {BJL,L4S,GVLM}")],
)
def test_missing_model_file_says_what_that_argument_expects(tmp_path: Path, flag: str, expected: str) -> None:
    src = write_geotiff(tmp_path / 'scene.tif', random_rgb(32, 32))
    args = ['map', flag, str(tmp_path / 'nope.pth'), '--input', str(src), '--output', str(tmp_path / 'o.tif')]
    pattern = rf'{flag} .*nope\.pth does not exist \(expected .*{re.escape(expected)}'
    with pytest.raises(MissingFileError, match=pattern):
        cli_main(args)
