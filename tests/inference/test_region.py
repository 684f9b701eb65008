"""Region-scale mapping: several processes (gloo), SIGKILL and resume, many scenes, bad input, full disk, memory."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pytest
import rasterio
import torch
from torch import Tensor, nn

from sam_cffnet.errors import ConfigError, DataError
from sam_cffnet.inference import InputRasterError, MapParams, map_scene, map_scenes

from .conftest import PixelModel, random_rgb, read, rgb_preprocessing, run_cli, write_geotiff

SCENE = (300, 420)  # 7 x 9 windows of 64 px, 4 x 5 blocks of 96 px
COMMON = ['--tile-size', '64', '--overlap', '16', '--batch-size', '2', '--block-size', '96', '--polygons', 'gpkg',
          '--trainer.accelerator', 'cpu', '--quiet']  # fmt: skip


def _map_args(checkpoint: Path, scene: Path, out: Path, *extra: str) -> list[str]:
    return ['map', '--checkpoint', str(checkpoint), '--input', str(scene), '--output', str(out), *COMMON, *extra]


def _polygons(path: Path) -> list[bytes]:
    return [bytes(g) for g in pyogrio.raw.read(path)[2]]


@pytest.fixture(scope='module')
def region(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A scene with nodata and its map by one process (the reference of the tests below)."""
    folder = tmp_path_factory.mktemp('region')
    img = random_rgb(*SCENE, seed=5)
    img[:, :70, :90] = 0  # nodata: two whole windows
    scene = write_geotiff(folder / 'scene.tif', img, nodata=0)
    out = folder / 'one' / 'map.tif'
    run = run_cli(_map_args(checkpoint, scene, out, '--num-workers', '0'))
    assert run.returncode == 0, run.stderr
    return {'scene': scene, 'raster': read(out)[0], 'polygons': _polygons(out.with_suffix('.gpkg')),
            'summary': json.loads(out.with_name('map.summary.json').read_text())}  # fmt: skip


def test_two_processes_write_the_same_outputs_as_one(region: dict[str, Any], checkpoint: Path, tmp_path: Path) -> None:
    """DDP on CPU (gloo), Lightning's own launcher: disjoint blocks per process, the same raster bit for bit."""
    out = tmp_path / 'map.tif'
    run = run_cli(_map_args(checkpoint, region['scene'], out, '--trainer.devices', '2', '--trainer.strategy', 'ddp'))
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(read(out)[0], region['raster'])
    assert _polygons(tmp_path / 'map.gpkg') == region['polygons']
    summary = json.loads((tmp_path / 'map.summary.json').read_text())
    assert summary['ranks'] == [0, 1] and region['summary']['ranks'] == [0]  # both processes wrote blocks ...
    assert summary['windows'] == region['summary']['windows']  # ... and no block twice
    assert summary['windows_skipped'] == region['summary']['windows_skipped'] > 0
    assert summary['num_polygons'] == region['summary']['num_polygons'] > 1


def test_sigkill_then_rerun_gives_the_uninterrupted_outputs(
    region: dict[str, Any], checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / 'map.tif'
    args = _map_args(checkpoint, region['scene'], out, '--num-workers', '2')
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
    proc = subprocess.Popen([sys.executable, '-m', 'sam_cffnet', *args], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    blocks = tmp_path / '.map.tif.map-state' / 'scenes' / '0000' / 'blocks'
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(blocks.glob('r*.json'))) < 3 and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the process and its DataLoader workers, as a scheduler would
    proc.wait()
    done = len(list(blocks.glob('r*.json')))  # finished blocks: those with a record
    assert 3 <= done < region['summary']['blocks'], 'the run was not stopped midway'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['.map.tif.map-state']  # nothing looks complete
    run = run_cli(args)  # the same command
    assert run.returncode == 0, run.stderr
    assert f'{done} of {region["summary"]["blocks"]} blocks already done' in run.stderr
    np.testing.assert_array_equal(read(out)[0], region['raster'])
    assert _polygons(tmp_path / 'map.gpkg') == region['polygons']
    assert not (tmp_path / '.map.tif.map-state').exists()


def _start(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
    env.pop('SAM_CFFNET_TRACEBACK', None)
    return subprocess.Popen([sys.executable, '-m', 'sam_cffnet', *args], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip


def _wait_for_records(proc: subprocess.Popen[str], blocks: Path, count: int) -> None:
    deadline = time.monotonic() + 300
    while len(list(blocks.glob('r*.json'))) < count:
        assert proc.poll() is None, f'the run ended early: {proc.communicate()[1][-3000:]}'
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.02)


@pytest.mark.parametrize(('sig', 'code'), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=['SIGTERM', 'SIGINT'])
def test_sigterm_and_ctrl_c_stop_after_the_block_with_a_hint_and_resume(
    region: dict[str, Any], checkpoint: Path, tmp_path: Path, sig: int, code: int
) -> None:
    """Before: SIGTERM was logged and ignored (the run went to its end), Ctrl-C gave exit 1 and no hint."""
    out = tmp_path / 'map.tif'
    args = _map_args(checkpoint, region['scene'], out, '--num-workers', '2')
    proc = _start(args)
    blocks = tmp_path / '.map.tif.map-state' / 'scenes' / '0000' / 'blocks'
    _wait_for_records(proc, blocks, 1)
    proc.send_signal(sig)  # to the main process only (as kill and timeout do); the workers are left to it
    _, stderr = proc.communicate(timeout=300)
    done = len(list(blocks.glob('r*.json')))
    assert proc.returncode == code, stderr[-3000:]
    assert 'Traceback' not in stderr and 1 <= done < region['summary']['blocks']
    last = stderr.strip().splitlines()[-1]
    name = signal.Signals(sig).name
    assert last == (f'sam_cffnet map: stopped by {name}: {done} of {region["summary"]["blocks"]} blocks are finished '
                    f'and kept in {tmp_path / ".map.tif.map-state"}; rerun the same command to resume')  # fmt: skip
    assert not list(blocks.glob('r*.tif'))[done:]  # every block file has its record: the block under way finished
    run = run_cli(args)  # the same command
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_array_equal(read(out)[0], region['raster'])
    assert _polygons(tmp_path / 'map.gpkg') == region['polygons']


def test_second_run_on_the_same_output_is_refused_at_once(
    region: dict[str, Any], checkpoint: Path, tmp_path: Path
) -> None:
    """Before: the second died with a traceback or a 'free space' error and poisoned the first's state."""
    out = tmp_path / 'map.tif'
    args = _map_args(checkpoint, region['scene'], out, '--num-workers', '0')
    first = _start(args)
    state = tmp_path / '.map.tif.map-state'
    _wait_for_records(first, state / 'scenes' / '0000' / 'blocks', 1)
    os.kill(first.pid, signal.SIGSTOP)  # held midway (the scene is small), alive
    try:
        for extra in ([], ['--overlap', '8', '--overwrite']):  # the same command, or other settings with --overwrite
            started = time.monotonic()
            run = run_cli([*args, *extra], timeout=120)
            assert run.returncode == 2, run.stderr[-3000:]
            lines = [line for line in run.stderr.splitlines() if line.startswith('sam_cffnet: error: ')]
            assert len(lines) == 1 and 'Traceback' not in run.stderr, run.stderr[-3000:]
            assert f'another map run (pid {first.pid} on ' in lines[0] and 'lock.json' in lines[0]
            assert time.monotonic() - started < 60  # at once: no model loaded (about 4 s of imports here)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-3000:]  # the first run finishes, its state intact
    np.testing.assert_array_equal(read(out)[0], region['raster'])
    assert not state.exists()


# ---------------------------------------------------------------------------------------------- many scenes
def test_scenes_with_different_crs_and_bands_are_mapped_each_in_its_own(tmp_path: Path) -> None:
    inputs = tmp_path / 'in'
    inputs.mkdir()
    a = write_geotiff(inputs / 'a.tif', random_rgb(90, 120, seed=1))  # UTM 48N, 3 bands
    rgba = np.concatenate([random_rgb(80, 70, seed=2), np.full((1, 80, 70), 255, np.uint8)])
    rgba[3, :20] = 0
    b = write_geotiff(inputs / 'b.tif', rgba, crs='EPSG:4326', transform=rasterio.Affine(1e-4, 0, 10, 0, -1e-4, 45),
                      photometric='RGB', alpha='YES')  # fmt: skip
    params = MapParams(inputs=[str(inputs / '*.tif')], output_dir=tmp_path / 'out', polygons='gpkg', tile_size=64,
                       overlap=16, batch_size=2, block_size=96, progress=False, num_workers=0)  # fmt: skip
    summaries = map_scenes(PixelModel(), params, rgb_preprocessing())
    assert [Path(s['input']).name for s in summaries] == ['a.tif', 'b.tif']
    for src, summary in zip((a, b), summaries, strict=True):
        _, meta = read(Path(summary['output']))
        with rasterio.open(src) as s:
            assert meta['crs'] == s.crs and meta['transform'] == s.transform and meta['shape'] == s.shape
        assert pyogrio.read_info(summary['polygons'])['crs'] == ('EPSG:32648' if src == a else 'EPSG:4326')
    assert summaries[0]['landslide_area_km2'] is not None and summaries[1]['landslide_area_km2'] is None
    assert summaries[1]['area_unit'] == 'degree^2'
    assert (read(Path(summaries[1]['output']))[0][:, :20] == 255).all()  # the alpha band is nodata, not a band
    with pytest.raises(ConfigError, match=r'--mosaic: .*b\.tif is in EPSG:4326, .*a\.tif in EPSG:32648'):
        map_scenes(PixelModel(), MapParams(inputs=[a, b], output_dir=tmp_path / 'm', mosaic=tmp_path / 'm.vrt'),
                   rgb_preprocessing())  # fmt: skip
    two = write_geotiff(inputs / 'two.tif', random_rgb(40, 40)[:2])
    with pytest.raises(InputRasterError, match=r'two\.tif: the raster has 2 band'):
        map_scenes(PixelModel(), MapParams(inputs=[a, two], output_dir=tmp_path / 'n'), rgb_preprocessing())
    assert not (tmp_path / 'm').exists() and not (tmp_path / 'n').exists()  # refused before any work


def test_mosaic_of_scenes_in_one_crs(tmp_path: Path) -> None:
    left = write_geotiff(tmp_path / 'left.tif', random_rgb(80, 100, seed=1))
    t = rasterio.Affine(2.0, 0.0, 500_000.0 + 2 * 100, 0.0, -2.0, 3_000_000.0 - 2 * 30)  # right of it, 30 rows down
    right = write_geotiff(tmp_path / 'right.tif', random_rgb(80, 60, seed=2), transform=t)
    params = MapParams(inputs=[left, right], output_dir=tmp_path / 'out', mosaic=tmp_path / 'out' / 'all.tif',
                       tile_size=64, overlap=16, batch_size=2, progress=False, num_workers=0)  # fmt: skip
    map_scenes(PixelModel(), params, rgb_preprocessing())
    mosaic, meta = read(tmp_path / 'out' / 'all.tif')
    assert meta['shape'] == (110, 160) and meta['layout'] == 'COG'
    np.testing.assert_array_equal(mosaic[:, :80, :100], read(tmp_path / 'out' / 'left.tif')[0])
    np.testing.assert_array_equal(mosaic[:, 30:110, 100:], read(tmp_path / 'out' / 'right.tif')[0])
    assert (mosaic[:, 80:, :100] == 255).all()


def _corrupt_tiles(path: Path, rows: range, cols: range) -> None:
    with rasterio.open(path) as src:
        item = src.get_tag_item
        spots = [(int(item(f'BLOCK_OFFSET_{c}_{r}', 'TIFF', bidx=1)), int(item(f'BLOCK_SIZE_{c}_{r}', 'TIFF', bidx=1)))
                 for r in rows for c in cols]  # fmt: skip
    with open(path, 'r+b') as fh:
        for offset, size in spots:
            fh.seek(offset)
            fh.write(np.random.default_rng(offset).integers(0, 256, size, dtype=np.uint8).tobytes())


def test_unreadable_scene_is_named_and_the_others_finish(tmp_path: Path) -> None:
    good = write_geotiff(tmp_path / 'good.tif', random_rgb(150, 150, seed=1))
    bad = write_geotiff(tmp_path / 'bad.tif', random_rgb(256, 256, seed=2), tiled=True, blockxsize=64, blockysize=64,
                        compress='deflate')  # fmt: skip
    _corrupt_tiles(bad, range(2, 4), range(2, 4))  # the header reads: the pixels of the bottom-right fail midway
    last = write_geotiff(tmp_path / 'last.tif', random_rgb(100, 100, seed=3))
    params = MapParams(inputs=[good, bad, last], output_dir=tmp_path / 'out', tile_size=64, overlap=16, batch_size=2,
                       block_size=96, progress=False, num_workers=0)  # fmt: skip
    with pytest.raises(DataError, match=r'1 of 3 scene\(s\) failed, the others are written: .*bad\.tif: cannot read'):
        map_scenes(PixelModel(), params, rgb_preprocessing())
    assert sorted(p.name for p in (tmp_path / 'out').glob('*.tif')) == ['good.tif', 'last.tif']
    assert read(tmp_path / 'out' / 'last.tif')[0].shape == (2, 100, 100)


# ---------------------------------------------------------------------------------------------- full disk
def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))  # writes past 40 kB fail (EFBIG), like a full disk


def test_full_disk_gives_a_clear_error_no_output_and_resumes(
    region: dict[str, Any], checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / 'map.tif'
    args = _map_args(checkpoint, region['scene'], out, '--num-workers', '0')
    run = run_cli(args, preexec_fn=_limit_file_size)
    assert run.returncode == 2, run.stderr
    assert 'sam_cffnet: error:' in run.stderr and 'cannot write' in run.stderr and 'Traceback' not in run.stderr
    assert 'rerun the same command to resume' in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['.map.tif.map-state']  # no complete-looking output
    run = run_cli(args)  # space again: the same command finishes the job
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(read(out)[0], region['raster'])


# ---------------------------------------------------------------------------------------------- memory
MEMORY_WORKER = """
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from sam_cffnet.inference import map_scene
sys.path.insert(0, sys.argv[3])
from conftest import PixelModel, rgb_preprocessing
model = PixelModel()
def status(key):
    return int(next(l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith(key)).split()[1])
map_scene(model, sys.argv[4], sys.argv[1] + '/warm.tif', preprocessing=rgb_preprocessing(), tile_size=128,
          overlap=32, block_size=256, progress=False, gdal_cache_mb=16)  # imports, kernels, Lightning: not the scene
Path('/proc/self/clear_refs').write_text('5')
before = status('VmRSS')
map_scene(model, sys.argv[2], sys.argv[1] + '/out.tif', preprocessing=rgb_preprocessing(), tile_size=128,
          overlap=32, block_size=256, progress=False, gdal_cache_mb=16)
print(json.dumps({'before_kib': before, 'peak_kib': status('VmHWM')}))
"""


@pytest.mark.skipif(not Path('/proc/self/clear_refs').exists(), reason='needs Linux /proc peak-RSS reset')
def test_peak_memory_is_flat_when_the_scene_grows_16x(tmp_path: Path) -> None:
    pattern = random_rgb(256, 256, seed=1)
    small = write_geotiff(tmp_path / 'small.tif', np.tile(pattern, (1, 4, 4)), tiled=True)
    large = write_geotiff(tmp_path / 'large.tif', np.tile(pattern, (1, 16, 16)), tiled=True)  # 16x the pixels
    peaks = {}
    for name, scene in (('small', small), ('large', large)):
        folder = tmp_path / name
        folder.mkdir()
        run = subprocess.run(
            [sys.executable, '-c', MEMORY_WORKER, str(folder), str(scene), str(Path(__file__).parent), str(small)],
            capture_output=True, text=True, timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'},
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout.strip().splitlines()[-1])
        peaks[name] = (result['peak_kib'] - result['before_kib']) / 1024
    # Holding the large scene (float32 pixels + blend buffers) would take 336 MiB more; what grows is bounded by
    # the GDAL block cache (16 MiB here) and the COG driver's buffers (~25 MiB, the same for 8192^2 px).
    whole_scene = 4096 * 4096 * (3 * 4 + 9) / 2**20
    assert peaks['large'] - peaks['small'] < 0.25 * whole_scene, peaks


# ---------------------------------------------------------------------------------------------- torch.compile
class _TinyNet(nn.Module):
    input_keys = ('image',)
    in_channels = 3

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, image: Tensor) -> Tensor:
        return self.net(image)


def test_compiled_model_maps_like_the_eager_one(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _TinyNet().eval()
    src = write_geotiff(tmp_path / 'scene.tif', random_rgb(100, 140, seed=6))
    args = {'preprocessing': rgb_preprocessing(), 'tile_size': 64, 'overlap': 16, 'batch_size': 4, 'progress': False}
    eager = map_scene(model, src, tmp_path / 'eager.tif', **args)
    compiled = map_scene(model, src, tmp_path / 'compiled.tif', compile=True, **args)
    a, b = read(tmp_path / 'eager.tif')[0].astype(int), read(tmp_path / 'compiled.tif')[0].astype(int)
    assert np.abs(a[0] - b[0]).max() <= 1 and (a[1] != b[1]).mean() < 1e-3
    assert compiled['windows'] == eager['windows']
