"""Polygons whose coordinates do not fit their CRS, through the real CLI: one line naming the file and the cause.

Two common mistakes: an EPSG:4326 inventory written with latitude as x (lat/lon swapped), and projected (UTM)
coordinates in a file without a CRS that is read as EPSG:4326 (a GeoJSON without a ``crs`` member is EPSG:4326 by
definition). Both used to end as ``polygons span x nan..nan``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cli_process
import pytest
import shapely
from conftest import load_fake_data_generator, model_flags

TINY_MODEL = {'variant': 'vit_tiny', 'input_size': None, 'sam_checkpoint': None}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    gen = load_fake_data_generator('inventory')
    return gen.make_inventory(tmp_path_factory.mktemp('crs') / 'area', scenes=1, size=128)


def fit_error(data: dict[str, Any], labels: Path, tmp_path: Path) -> str:
    """The one ``sam_cffnet: error:`` line of ``fit`` on ``labels`` (exit status 2, no traceback)."""
    args = [
        'fit', '--config', 'inventory.yaml', '--data.init_args.images', data['images'][0],
        '--data.init_args.labels', str(labels), '--data.init_args.tile_size', '64',
        '--data.init_args.block_size', '64', '--data.init_args.stride', '32', '--data.init_args.num_workers', '0',
        '--data.init_args.progress', 'false', '--data.init_args.cache_dir', str(tmp_path / 'cache'),
        *model_flags(TINY_MODEL), '--trainer.accelerator', 'cpu', '--trainer.devices', '1',
        '--trainer.logger', 'false', '--trainer.enable_progress_bar', 'false', '--trainer.fast_dev_run', 'true',
        '--trainer.default_root_dir', str(tmp_path / 'fit'),
    ]  # fmt: skip
    env = {**os.environ, 'PYTHONPATH': str(REPO)}
    env.pop('SAM_CFFNET_TRACEBACK', None)
    result = cli_process.run(args, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith('sam_cffnet: error:')]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


def test_swapped_lat_lon_and_crs_less_utm_polygons_are_named(data: dict[str, Any], tmp_path: Path) -> None:
    gen = load_fake_data_generator('inventory')
    in_degrees = data['polygons'].to_crs('EPSG:4326').geometry
    swapped = gen.write_vector(
        tmp_path / 'swapped.geojson', [shapely.transform(g, lambda c: c[:, ::-1]) for g in in_degrees], 'EPSG:4326'
    )
    error = fit_error(data, swapped, tmp_path)
    assert 'swapped.geojson' in error and 'swapped' in error.split('swapped.geojson', 1)[1]
    assert 'latitude' in error and 'nan' not in error

    utm = gen.write_vector(tmp_path / 'utm_without_crs.geojson', list(data['polygons'].geometry), None)
    error = fit_error(data, utm, tmp_path)
    assert 'utm_without_crs.geojson' in error and 'nan' not in error
    assert 'no CRS' in error and 'EPSG:32648' in error and 'labels_crs' in error
