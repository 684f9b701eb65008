"""Your own data through the real CLI: fit, validate, test, predict and map on a generated UTM scene with EPSG:4326
polygons (``inventory.yaml``), and bad input reported as one line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cli_process
import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import torch
from conftest import load_fake_data_generator, model_flags

from sam_cffnet.callbacks import LastCheckpoint
from sam_cffnet.cli import main
from sam_cffnet.errors import MissingFileError
from sam_cffnet.preprocessing import Preprocessing

TINY_MODEL = {'variant': 'vit_tiny', 'input_size': None, 'sam_checkpoint': None}


@pytest.fixture(scope='module')
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    gen = load_fake_data_generator('inventory')
    root = tmp_path_factory.mktemp('own_data')
    inventory = gen.make_inventory(root / 'area', scenes=2, size=256)
    # the "next scene" to map: another area, same sensor (3 bands, UTM, 2 m), with its own nodata collar
    inventory['new_scene'] = gen.make_inventory(root / 'next', scenes=1, size=192, seed=11)['images'][0]
    return inventory


def cli_args(data: dict[str, Any], tmp_path: Path, *extra: str) -> list[str]:
    return [
        '--config', 'inventory.yaml',
        '--data.init_args.images', str(Path(data['images'][0]).parent / '*.tif'),
        '--data.init_args.labels', data['labels'],
        '--data.init_args.tile_size', '64',
        '--data.init_args.block_size', '128',
        '--data.init_args.stride', '32',
        '--data.init_args.split_ratios', '[0.6, 0.2, 0.2]',
        '--data.init_args.batch_size', '2',
        '--data.init_args.num_workers', '0',
        '--data.init_args.progress', 'false',
        '--data.init_args.cache_dir', str(tmp_path / 'cache'),
        *model_flags(TINY_MODEL),
        '--trainer.accelerator', 'cpu',
        '--trainer.devices', '1',
        '--trainer.logger', 'false',
        '--trainer.enable_progress_bar', 'false',
        *extra,
    ]  # fmt: skip


def test_fit_validate_test_predict_then_map_a_new_scene(data: dict[str, Any], tmp_path: Path) -> None:
    fit = main([
        'fit', *cli_args(data, tmp_path), '--trainer.default_root_dir', str(tmp_path / 'fit'),
        '--trainer.max_epochs', '2', '--trainer.limit_train_batches', '3', '--trainer.limit_val_batches', '2',
    ])  # fmt: skip
    assert fit.trainer.state.finished and fit.trainer.global_step == 6
    assert 'val_landslide_iou' in fit.trainer.callback_metrics
    datamodule = fit.datamodule
    assert datamodule.split_info['areas']['test']['tiles'] > 0
    last = next(c.last_model_path for c in fit.trainer.callbacks if isinstance(c, LastCheckpoint))
    stored = torch.load(last, weights_only=True)['sam_cffnet']['preprocessing']
    assert Preprocessing.from_dict(stored) == datamodule.preprocessing
    assert stored['dataset'] == 'inventory' and stored['bands'] == ['red', 'green', 'blue']

    validate = main(['validate', *cli_args(data, tmp_path), '--ckpt_path', last,
                     '--trainer.default_root_dir', str(tmp_path / 'validate')])  # fmt: skip
    assert 'val_landslide_iou' in validate.trainer.callback_metrics
    test = main(['test', *cli_args(data, tmp_path), '--ckpt_path', last,
                 '--trainer.default_root_dir', str(tmp_path / 'test')])  # fmt: skip
    assert {'test_landslide_iou', 'test_macro_f1'} <= set(test.trainer.callback_metrics)

    predict = main(['predict', *cli_args(data, tmp_path), '--ckpt_path', last,
                    '--trainer.default_root_dir', str(tmp_path / 'predict')])  # fmt: skip
    n_test = len(predict.datamodule.tiles['test'])
    out = tmp_path / 'predict' / 'predictions'
    masks = sorted(out.glob('tile_*_mask.png'))
    assert len(masks) == n_test and len(list(out.glob('tile_*_probability.png'))) == n_test
    assert (out / 'overview.png').is_file()
    # the tile numbers of the PNGs are the rows of the predict-tile index (GeoJSON: index -> bounds)
    index = gpd.read_file(predict.datamodule.split_info['predict_tiles'])
    assert sorted(index['index']) == list(range(n_test))
    assert [f'tile_{i:06d}_mask.png' for i in range(n_test)] == [p.name for p in masks]
    first = predict.datamodule.tiles['test'].bounds(0)
    assert index.geometry[index['index'] == 0].iloc[0].equals(shapely.box(*first))

    mapped = tmp_path / 'next_scene_landslides.tif'
    assert main(['map', '--checkpoint', last, '--input', data['new_scene'], '--output', str(mapped), '--quiet']) == 0
    with rasterio.open(data['new_scene']) as src, rasterio.open(mapped) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform and (dst.width, dst.height) == (192, 192)
        assert dst.count == 2
        valid = src.dataset_mask() > 0
        mask = dst.read(2)
    assert (mask[~valid] == 255).all() and set(np.unique(mask[valid]).tolist()) <= {0, 1}
    with pytest.raises(FileExistsError, match='overwrite'):
        main(['map', '--checkpoint', last, '--input', data['new_scene'], '--output', str(mapped), '--quiet'])


def test_print_config_lists_the_inventory_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(['fit', '--config', 'inventory.yaml', '--print_config'])
    out = capsys.readouterr().out
    assert 'sam_cffnet.datamodules.InventoryDataModule' in out
    for option in ('images:', 'labels:', 'dem:', 'dem_mode:', 'negative_ratio:', 'block_size:', 'split_regions:'):
        assert option in out


def test_bad_input_is_one_line_before_training(data: dict[str, Any], tmp_path: Path) -> None:
    gen = load_fake_data_generator('inventory')
    lines = gen.write_vector(tmp_path / 'roads.geojson', [shapely.LineString([(105.0, 27.1), (105.001, 27.1)])],
                             'EPSG:4326')  # fmt: skip
    args = cli_args(data, tmp_path, '--trainer.fast_dev_run', 'true')
    args[args.index('--data.init_args.labels') + 1] = str(lines)
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parents[1])}
    env.pop('SAM_CFFNET_TRACEBACK', None)
    result = cli_process.run(['fit', *args], cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith('sam_cffnet: error:')]
    assert len(errors) == 1 and 'roads.geojson' in errors[0] and 'not polygons (1 LineString' in errors[0]
    assert 'Traceback' not in result.stderr
    missing = cli_args(data, tmp_path)
    missing[missing.index('--data.init_args.images') + 1] = str(tmp_path / 'nowhere' / '*.tif')
    with pytest.raises(MissingFileError, match=r'data.init_args.images: no file matches .*nowhere'):
        main(['fit', *missing])


def test_reference_scale_and_json_summary_of_map(data: dict[str, Any], tmp_path: Path) -> None:
    """The datamodule's preprocessing is what map applies: same constants for the same bands."""
    from sam_cffnet.datamodules import InventoryDataModule

    dm = InventoryDataModule(images=data['images'], labels=data['labels'], tile_size=64, block_size=128,
                             cache_dir=str(tmp_path / 'cache'), progress=False)  # fmt: skip
    pre = dm.preprocessing
    assert pre.scale == pytest.approx((1 / 255,) * 3) and pre.clip == (0.0, 1.0)
    assert pre.raster_band_indexes(3, data['new_scene']) == ([1, 2, 3], [])
    assert json.loads(json.dumps(pre.to_dict()))['all_bands'] == ['red', 'green', 'blue']
