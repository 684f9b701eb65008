"""Whole-scene mapping: georeference, coverage, blending, nodata, polygons, preprocessing parity, errors, CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pytest
import rasterio
import torch
from torch import Tensor, nn

from sam_cffnet.cli import main as cli_main
from sam_cffnet.datamodules import BijieDataModule, GVLMDataModule, Landslide4SenseDataModule
from sam_cffnet.errors import CheckpointError, DataError
from sam_cffnet.inference import (
    PROBABILITY_SCALE,
    InputRasterError,
    load_mapping_model,
    map_scene,
    vectorize_mask,
    window_inputs,
    window_weight,
)
from sam_cffnet.preprocessing import Preprocessing
from sam_cffnet.tasks.segmentation import SegmentationTask

from .conftest import CRS, TRANSFORM, random_rgb, write_geotiff

FAST = {'tile_size': 64, 'overlap': 16, 'batch_size': 2, 'progress': False}


class PixelModel(nn.Module):
    """A per-pixel 'model' (logit = 6 * (mean of the bands - 0.5)): any correct tiling gives the same map."""

    input_keys = ('image',)
    in_channels = 3

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.fail_after = fail_after

    def forward(self, image: Tensor) -> Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        return 6 * (image.mean(1, keepdim=True) - 0.5)


def pixel_expected(img: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """What PixelModel gives on the whole image at once, encoded as the output's probability band."""
    with torch.no_grad():
        p = torch.sigmoid(PixelModel()(pre.normalize_image(torch.from_numpy(img)[None])))[0, 0].numpy()
    return np.rint(p.astype(np.float64) * PROBABILITY_SCALE).astype(np.uint8)


def read(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with rasterio.open(path) as src:
            meta = {'crs': src.crs, 'transform': src.transform, 'shape': (src.height, src.width),
                    'nodata': src.nodata, 'layout': src.tags(ns='IMAGE_STRUCTURE').get('LAYOUT'),
                    'descriptions': src.descriptions, 'tiled': src.profile.get('tiled'),
                    'compress': src.profile.get('compress')}  # fmt: skip
            return src.read(), meta


# ---------------------------------------------------------------------------------------------- pure pieces
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


def test_window_weight_positive_and_complementary() -> None:
    w = window_weight(64, 16)
    assert w.shape == (64, 64) and w.min() > 0 and w.max() == 1
    row = w[32]
    np.testing.assert_allclose(row[48:] + row[:16], 1.0, atol=1e-6)  # neighbours 48 px apart sum to 1
    assert (window_weight(8, 0) == 1).all()


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


def test_geotiff_georeference_coverage_nodata_and_polygons(task: SegmentationTask, tmp_path: Path) -> None:
    img = random_rgb(150, 200, seed=1)  # not a multiple of the tile size
    img[:, :20, :30] = 0  # nodata corner
    img[:, 100:110, 150:] = 0  # nodata stripe reaching the right edge
    src = write_geotiff(tmp_path / 'scene.tif', img, nodata=0)
    out_path, vec = tmp_path / 'map.tif', tmp_path / 'map.geojson'
    summary = map_scene(task, src, out_path, polygons_path=vec, **FAST)
    out, meta = read(out_path)
    assert meta['crs'] == rasterio.crs.CRS.from_string(CRS) and meta['transform'] == TRANSFORM
    assert meta['shape'] == (150, 200) and out.shape == (2, 150, 200) and meta['nodata'] == 255
    assert meta['layout'] == 'COG' and meta['tiled'] and meta['compress'] == 'deflate'
    assert meta['descriptions'] == ('landslide_probability', 'landslide_mask')
    nodata = (img == 0).all(0)
    assert (out[:, nodata] == 255).all()  # nodata stays nodata, never landslide
    assert (out[:, ~nodata] != 255).all()  # every other pixel predicted: the scene is covered completely
    assert (out[1][~nodata] == (out[0][~nodata] > 127)).mean() > 0.99  # mask = p > 0.5 (up to uint8 rounding)
    assert summary['valid_pixels'] == int((~nodata).sum())
    assert summary['landslide_pixels'] == int((out[1] == 1).sum())
    info = pyogrio.read_info(vec)
    assert rasterio.crs.CRS.from_user_input(info['crs']) == rasterio.crs.CRS.from_string(CRS)
    if info['features']:
        x0, y0, x1, y1 = info['total_bounds']
        assert 500_000 <= x0 <= x1 <= 500_400 and 2_999_700 <= y0 <= y1 <= 3_000_000
    assert not [p for p in tmp_path.iterdir() if 'partial' in p.name]


def test_png_input_keeps_pixel_grid(task: SegmentationTask, tmp_path: Path) -> None:
    rgba = np.concatenate([random_rgb(70, 90, seed=2), np.full((1, 70, 90), 255, np.uint8)])
    rgba[3, :10, :10] = 0  # transparent corner = nodata
    png = tmp_path / 'site.png'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with rasterio.open(png, 'w', driver='PNG', height=70, width=90, count=4, dtype='uint8') as dst:
            dst.write(rgba)
    map_scene(task, png, tmp_path / 'site.tif', write_mask=False, **FAST)
    out, meta = read(tmp_path / 'site.tif')
    assert meta['crs'] is None and meta['transform'] == rasterio.Affine.identity() and meta['shape'] == (70, 90)
    assert out.shape == (1, 70, 90)
    assert (out[0, :10, :10] == 255).all() and (out[0, 10:, 10:] != 255).all()


# ---------------------------------------------------------------------------------------------- blending, streaming
@pytest.mark.parametrize('block_width', [4096, 70], ids=['one-block', 'column-blocks'])
def test_blending_is_seamless_and_exact_for_a_pixelwise_model(tmp_path: Path, block_width: int) -> None:
    pre = BijieDataModule(root='unused').preprocessing
    img = random_rgb(130, 190, seed=3)
    src = write_geotiff(tmp_path / 'scene.tif', img)
    summary = map_scene(PixelModel(), src, tmp_path / 'out.tif', preprocessing=pre, block_width=block_width, **FAST)
    assert summary['column_blocks'] == (1 if block_width > 190 else 3)
    out, _ = read(tmp_path / 'out.tif')
    diff = np.abs(out[0].astype(int) - pixel_expected(img, pre).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # blending = weighted mean of equal values: no seams


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
    import shapely

    poly = shapely.from_wkb(geometry[0])
    assert poly.geom_type == 'Polygon' and poly.bounds == (500_010.0, 2_999_950.0, 500_050.0, 2_999_990.0)
    empty = write_geotiff(tmp_path / 'empty.tif', np.zeros((1, 8, 8), np.uint8))
    assert vectorize_mask(empty, tmp_path / 'empty.geojson') == 0
    assert pyogrio.read_info(tmp_path / 'empty.geojson')['features'] == 0


# ---------------------------------------------------------------------------------------------- errors, atomicity
def test_clear_errors(tmp_path: Path) -> None:
    pre = BijieDataModule(root='unused').preprocessing
    text = tmp_path / 'notes.tif'
    text.write_text('not a raster')
    with pytest.raises(InputRasterError, match='not a readable raster'):
        map_scene(PixelModel(), text, tmp_path / 'o.tif', preprocessing=pre, **FAST)
    two = write_geotiff(tmp_path / 'two.tif', random_rgb(32, 32)[:2])
    with pytest.raises(InputRasterError, match=r'2 band\(s\) but the model was trained on 3 bands'):
        map_scene(PixelModel(), two, tmp_path / 'o.tif', preprocessing=pre, **FAST)
    bad = tmp_path / 'bad.ckpt'
    bad.write_bytes(b'\x00garbage' * 10)
    with pytest.raises(CheckpointError, match=r'bad\.ckpt'):
        load_mapping_model(bad)
    with pytest.raises(FileNotFoundError):
        map_scene(PixelModel(), tmp_path / 'missing.tif', tmp_path / 'o.tif', preprocessing=pre, **FAST)
    existing = tmp_path / 'exists.tif'
    existing.write_bytes(b'keep me')
    three = write_geotiff(tmp_path / 'three.tif', random_rgb(32, 32))
    with pytest.raises(FileExistsError, match='overwrite'):
        map_scene(PixelModel(), three, existing, preprocessing=pre, **FAST)
    assert existing.read_bytes() == b'keep me'


def test_interrupted_run_leaves_no_output(tmp_path: Path) -> None:
    pre = BijieDataModule(root='unused').preprocessing
    src = write_geotiff(tmp_path / 'scene.tif', random_rgb(150, 150))
    with pytest.raises(KeyboardInterrupt):
        map_scene(PixelModel(fail_after=2), src, tmp_path / 'out.tif', preprocessing=pre,
                  polygons_path=tmp_path / 'out.geojson', **FAST)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ['scene.tif']


# ---------------------------------------------------------------------------------------------- checkpoint + CLI
@pytest.mark.filterwarnings('ignore:.*RANDOM weights')
def test_cli_map_from_checkpoint(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_geotiff(tmp_path / 'scene.tif', random_rgb(64, 80))
    out = tmp_path / 'out.tif'
    args = ['map', '--checkpoint', str(checkpoint), '--input', str(src), '--output', str(out), '--tile-size', '64',
            '--overlap', '16', '--batch-size', '2', '--precision', 'bf16', '--device', 'cpu', '--quiet',
            '--polygons', str(tmp_path / 'out.gpkg'), '--min-area', '8']  # fmt: skip
    assert cli_main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['windows'] == 2 and summary['bands_used'] == {'spectral': [1, 2, 3], 'dem': []}
    _, meta = read(out)
    assert meta['shape'] == (64, 80) and meta['transform'] == TRANSFORM
    with pytest.raises(FileExistsError, match='overwrite'):  # output exists, no --overwrite
        cli_main(args)
    bad = tmp_path / 'bad.ckpt'
    bad.write_text('nope')
    with pytest.raises(CheckpointError, match=r'bad\.ckpt'):
        cli_main(['map', '--checkpoint', str(bad), '--input', str(src), '--output', str(tmp_path / 'x.tif')])
