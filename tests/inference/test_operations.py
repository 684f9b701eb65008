"""Mapping under operations: data types, damaged blocks, signals, huge scenes, concurrent runs, clean-up, messages."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sam_cffnet.datamodules import Landslide4SenseDataModule
from sam_cffnet.errors import OutputExistsError
from sam_cffnet.inference import InputRasterError, MapParams, map_scene, map_scenes
from sam_cffnet.inference.raster import training_dtype, write_error
from sam_cffnet.preprocessing import Preprocessing

from .conftest import REPO, PixelModel, random_rgb, read, rgb_preprocessing, run_cli, write_geotiff

FAST = {'tile_size': 64, 'overlap': 16, 'batch_size': 2, 'progress': False}
CLI_FAST = ['--tile-size', '64', '--overlap', '16', '--batch-size', '2', '--trainer.accelerator', 'cpu', '--quiet',
            '--num-workers', '0', '--no-quicklook']  # fmt: skip


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith('sam_cffnet: error: ')]


def _assert_one_line_error(run: subprocess.CompletedProcess[str], *named: str) -> str:
    assert run.returncode == 2, run.stderr[-3000:]
    assert 'Traceback' not in run.stderr, run.stderr[-3000:]
    lines = _error_lines(run.stderr)
    assert len(lines) == 1, run.stderr[-3000:]
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


def _popen(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
    env.pop('SAM_CFFNET_TRACEBACK', None)
    return subprocess.Popen([sys.executable, '-m', 'sam_cffnet', *args], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)  # fmt: skip


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f'the run ended early ({proc.returncode}): {proc.communicate()[1][-3000:]}')
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f'timed out: {proc.communicate()[1][-3000:]}')
        time.sleep(0.05)


def _records(state: Path) -> list[Path]:
    return sorted((state / 'scenes' / '0000' / 'blocks').glob('r*.json'))


# ---------------------------------------------------------------------------------------------- data type
def test_uint16_scene_with_a_uint8_checkpoint_is_refused_in_one_line_before_any_window(
    checkpoint: Path, tmp_path: Path
) -> None:
    """The report: exit 0 and 22x the landslide area. Now: one line naming the scene, both types and the scale."""
    img = random_rgb(64, 80).astype(np.uint16) * 200  # 16-bit reflectance-like values
    scene = write_geotiff(tmp_path / 'scene16.tif', img)
    out = tmp_path / 'out.tif'
    run = run_cli(['map', '--checkpoint', str(checkpoint), '--input', str(scene), '--output', str(out), *CLI_FAST])
    line = _assert_one_line_error(run, 'scene16.tif', 'uint16', 'uint8', 'x * 0.00392157', 'gdal_translate')
    assert 'the scene is uint16 but the checkpoint was trained on uint8 imagery' in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ['scene16.tif']  # no output, no state, no lock


def test_data_type_rule_of_each_pipeline(tmp_path: Path) -> None:
    assert training_dtype(rgb_preprocessing()) == ('uint8', 'the bijie imagery')
    assert training_dtype(Preprocessing.reference()) == ('uint8', 'the reference imagery')
    l4s = Landslide4SenseDataModule(root='unused', bands='rgb', normalization='dataset').preprocessing
    assert training_dtype(l4s) == ('float', 'the landslide4sense imagery')
    note = 'x * 0.0001 clipped to [0, 1], no mean/std (uint16 imagery)'  # what an inventory pipeline records
    own = Preprocessing(bands=('b1',), scale=(1e-4,), mean=(0,), std=(1,), clip=(0, 1), normalization='reference',
                        stats_source=note, dataset='inventory')  # fmt: skip
    assert training_dtype(own) == ('uint16', 'inventory uint16 imagery')
    custom = Preprocessing(bands=('b1',), scale=(1.0,), mean=(0,), std=(1,))
    assert training_dtype(custom) is None  # not known: not checked
    floats = write_geotiff(tmp_path / 'floats.tif', random_rgb(40, 40).astype(np.float32))
    with pytest.raises(InputRasterError, match=r'floats\.tif: the scene is float32 but .* trained on uint8'):
        map_scene(PixelModel(), floats, tmp_path / 'o.tif', preprocessing=rgb_preprocessing(), **FAST)
    assert not (tmp_path / '.o.tif.map-state').exists()  # the lock taken for the run is released, its folder gone


# ---------------------------------------------------------------------------------------------- damaged blocks
def _swap(a: Path, b: Path) -> None:
    tmp = a.with_name('swap.tmp')
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


def test_damaged_blocks_are_recomputed_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Truncated, empty, corrupt, swapped (files or whole blocks) after an interrupted run: the rerun recomputes
    exactly those, with a warning each, and writes the raster of an uninterrupted run."""
    pre = rgb_preprocessing()
    src = write_geotiff(tmp_path / 'scene.tif', random_rgb(240, 240, seed=7))
    args = {'preprocessing': pre, 'polygons_path': 'gpkg', 'block_size': 48, **FAST}
    full = map_scene(PixelModel(), src, tmp_path / 'full' / 'out.tif', **args)
    with pytest.raises(RuntimeError, match='interrupted'):
        map_scene(PixelModel(fail_after=30), src, tmp_path / 'out.tif', **args)
    state = tmp_path / '.out.tif.map-state'
    names = [p.stem for p in _records(state)]
    assert 8 <= len(names) < full['blocks'], names
    blocks = state / 'scenes' / '0000' / 'blocks'
    tif = {n: blocks / f'{n}.tif' for n in names}
    tif[names[0]].write_bytes(tif[names[0]].read_bytes()[:300])  # truncated
    tif[names[1]].write_bytes(b'')  # empty
    data = bytearray(tif[names[2]].read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    tif[names[2]].write_bytes(bytes(data))  # corrupt, same size
    (blocks / f'{names[3]}.npz').write_bytes(b'PK\x03\x04 not a zip')  # corrupt polygons
    _swap(tif[names[4]], tif[names[5]])  # two valid block files swapped
    for ext in ('tif', 'npz', 'json'):  # two whole blocks (files and records) swapped
        _swap(blocks / f'{names[6]}.{ext}', blocks / f'{names[7]}.{ext}')
    capsys.readouterr()
    again = map_scene(PixelModel(), src, tmp_path / 'out.tif', **args)
    err = capsys.readouterr().err
    warned = sorted(n for n in names if f'warning: block {n} ' in err)
    assert warned == sorted(names[:8]), err
    assert 'fails its checksum' in err and 'is empty' in err and 'records the window' in err
    assert f'{len(names) - 8} of {full["blocks"]} blocks already done' in err
    np.testing.assert_array_equal(read(tmp_path / 'out.tif')[0], read(tmp_path / 'full' / 'out.tif')[0])
    assert again['num_polygons'] == full['num_polygons'] and again['windows'] == full['windows']
    assert not state.exists()


# ---------------------------------------------------------------------------------------------- huge scene
def _huge_vrt(folder: Path, size: int = 1_000_000) -> Path:
    small = write_geotiff(folder / 'small.tif', random_rgb(64, 64))
    bands = ''.join(
        f'  <VRTRasterBand dataType="Byte" band="{b}">\n    <SimpleSource>\n'
        f'      <SourceFilename relativeToVRT="1">{small.name}</SourceFilename><SourceBand>{b}</SourceBand>\n'
        f'      <SrcRect xOff="0" yOff="0" xSize="64" ySize="64"/><DstRect xOff="0" yOff="0" xSize="64" ySize="64"/>\n'
        f'    </SimpleSource>\n  </VRTRasterBand>\n'
        for b in (1, 2, 3)
    )
    vrt = folder / 'huge.vrt'
    vrt.write_text(f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">\n{bands}</VRTDataset>\n')
    return vrt


def _peak_rss_mib(pid: int) -> float:
    text = Path(f'/proc/{pid}/status').read_text()
    return int(next(x for x in text.splitlines() if x.startswith('VmHWM')).split()[1]) / 1024


@pytest.mark.skipif(not Path('/proc/self/status').exists(), reason='reads peak memory from /proc')
def test_huge_vrt_starts_in_seconds_with_bounded_memory_and_stops_on_sigterm(checkpoint: Path, tmp_path: Path) -> None:
    """A 1,000,000 x 1,000,000 px VRT over a 64 px file: 106,276 blocks, 30 million windows. Planning them ahead grew
    past 6 GiB in 37 s without a window; now the first window is done in seconds and the peak memory is that of any
    run (Python, torch, the model). SIGTERM then stops it after the block under way, exit 143, with the hint."""
    vrt = _huge_vrt(tmp_path)
    out = tmp_path / 'huge_map.tif'
    proc = _popen(['map', '--checkpoint', str(checkpoint), '--input', str(vrt), '--output', str(out), *CLI_FAST])
    progress = tmp_path / '.huge_map.tif.map-state' / 'progress' / 'rank00000'
    started = time.monotonic()
    cap_mib = 3072.0
    try:
        while True:
            peak = _peak_rss_mib(proc.pid)
            if peak > cap_mib or proc.poll() is not None or time.monotonic() - started > 240:
                break
            try:
                if int(progress.read_text() or 0) > 0:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        first_window = time.monotonic() - started
        peak = _peak_rss_mib(proc.pid)
    finally:
        if proc.poll() is None:  # a second SIGTERM: stop at the next batch, without finishing the 4,096-window block
            proc.send_signal(signal.SIGTERM)
            time.sleep(1)
            proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert peak < 1536, f'peak RSS {peak:.0f} MiB before the first window ({first_window:.1f} s)'
    assert first_window < 60, f'first window after {first_window:.1f} s'  # about 5 s on an idle 2-core machine
    assert proc.returncode == 143, stderr[-3000:]
    assert 'stopped by SIGTERM: 0 of 106276 blocks are finished' in stderr
    assert stderr.rstrip().endswith('rerun the same command to resume'), stderr[-2000:]


# ---------------------------------------------------------------------------------------------- one run per output
def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    state = tmp_path / '.out.tif.map-state'
    state.mkdir()
    (state / 'lock.json').write_text(json.dumps({'pid': int(dead.stdout), 'host': os.uname().nodename}))
    src = write_geotiff(tmp_path / 'scene.tif', random_rgb(64, 64))
    summary = map_scene(PixelModel(), src, tmp_path / 'out.tif', preprocessing=rgb_preprocessing(), **FAST)
    assert summary['windows'] == 1 and not state.exists()


def test_live_lock_refuses_at_once_and_leaves_the_state(tmp_path: Path) -> None:
    """A lock held by a live process (here a sleeping child) refuses a second run, even with --overwrite."""
    src = write_geotiff(tmp_path / 'scene.tif', random_rgb(150, 150))
    pre = rgb_preprocessing()
    with pytest.raises(RuntimeError, match='interrupted'):
        map_scene(PixelModel(fail_after=3), src, tmp_path / 'out.tif', preprocessing=pre, block_size=48, **FAST)
    state = tmp_path / '.out.tif.map-state'
    holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        start = Path(f'/proc/{holder.pid}/stat').read_text().rsplit(')', 1)[-1].split()[19]
        (state / 'lock.json').write_text(json.dumps({'pid': holder.pid, 'host': os.uname().nodename, 'start': start,
                                                     'since': 'now'}))  # fmt: skip
        before = sorted((str(p.relative_to(state)), p.stat().st_mtime_ns) for p in state.rglob('*'))
        for overwrite in (False, True):
            with pytest.raises(OutputExistsError, match=rf'another map run \(pid {holder.pid} on .*lock\.json'):
                map_scene(PixelModel(), src, tmp_path / 'out.tif', preprocessing=pre, block_size=48,
                          overwrite=overwrite, **FAST)  # fmt: skip
        after = sorted((str(p.relative_to(state)), p.stat().st_mtime_ns) for p in state.rglob('*'))
        assert after == before  # the first run's state is intact
    finally:
        holder.kill()
        holder.wait()
    summary = map_scene(PixelModel(), src, tmp_path / 'out.tif', preprocessing=pre, block_size=48, **FAST)
    assert summary['windows'] > 0 and not state.exists()  # the holder is gone: its lock is taken over


# ---------------------------------------------------------------------------------------------- same run, paths
def test_relative_and_absolute_output_are_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pre = rgb_preprocessing()
    src = write_geotiff(tmp_path / 'scene.tif', random_rgb(150, 150))
    (tmp_path / 'maps').mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match='interrupted'):
        map_scene(PixelModel(fail_after=6), 'scene.tif', 'maps/out.tif', preprocessing=pre, block_size=48, **FAST)
    capsys.readouterr()
    summary = map_scene(PixelModel(), src, tmp_path / 'maps' / 'out.tif', preprocessing=pre, block_size=48, **FAST)
    assert 'blocks already done' in capsys.readouterr().err  # resumed, not refused as another run
    for key in ('input', 'output', 'summary', 'quicklook'):  # every path of the summary is absolute
        assert summary[key] is None or Path(summary[key]).is_absolute(), (key, summary[key])
    assert summary['output'] == str(tmp_path / 'maps' / 'out.tif')


# ---------------------------------------------------------------------------------------------- messages
def test_read_only_output_folder_is_named_not_reported_as_a_full_disk(checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / 'ro'
    folder.mkdir()
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=4m', 'tmpfs', str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f'cannot mount a read-only file system here: {mounted.stderr!r}')
    try:
        scene = write_geotiff(tmp_path / 'scene.tif', random_rgb(64, 64))
        run = run_cli(['map', '--checkpoint', str(checkpoint), '--input', str(scene), '--output',
                       str(folder / 'out.tif'), *CLI_FAST])  # fmt: skip
    finally:
        subprocess.run(['umount', str(folder)], check=False)
    line = _assert_one_line_error(run, str(folder), 'read-only file system')
    assert 'disk full' not in line and 'free space' not in line


def test_write_error_names_permission_and_read_only_causes(tmp_path: Path) -> None:
    import errno

    ro = write_error(OSError(errno.EROFS, 'Read-only file system'), tmp_path / 'x.tif')
    assert 'read-only file system' in str(ro) and str(tmp_path) in str(ro)
    denied = write_error(PermissionError(errno.EACCES, 'Permission denied'), tmp_path / 'x.tif')
    assert 'permission denied' in str(denied) and 'disk full' not in str(denied)


def test_summary_table_says_width_x_height_and_names_the_mosaic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    left = write_geotiff(tmp_path / 'left.tif', random_rgb(60, 100, seed=1))
    params = MapParams(inputs=[left], output_dir=tmp_path / 'out', mosaic=tmp_path / 'out' / 'all.vrt', quicklook=False,
                       tile_size=64, overlap=16, batch_size=2, progress=False, num_workers=0)  # fmt: skip
    (summary,) = map_scenes(PixelModel(), params, rgb_preprocessing())
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith('scene'))
    row = next(line for line in out.splitlines() if line.startswith('left.tif'))
    assert 'W x H px' in header and '100 x 60' in row  # width x height, labelled
    assert f'mosaic: {tmp_path / "out" / "all.vrt"}' in out
    assert f'maps: {tmp_path / "out" / "left.tif"}' in out
    saved = json.loads((tmp_path / 'out' / 'left.summary.json').read_text())
    assert all(Path(saved[k]).is_absolute() for k in ('input', 'output', 'summary')) and saved == summary


# ---------------------------------------------------------------------------------------------- clean-up
KILL_DURING_REMOVAL = """
import os, signal, sys
import sam_cffnet.inference.state as state
armed = []
def counting(real):
    def wrapper(*args, **kwargs):
        if armed:
            armed.append(1)
            if len(armed) > 6:  # killed after 5 deletions of the state's removal
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return wrapper
os.unlink, os.rmdir = counting(os.unlink), counting(os.rmdir)
def arming(real):
    def wrapper(*args, **kwargs):
        armed.append(1)
        return real(*args, **kwargs)
    return wrapper
for name in ('finish', 'remove'):  # the removal at the end of a run (finish; remove before the fix)
    if hasattr(state.RunState, name):
        setattr(state.RunState, name, arming(getattr(state.RunState, name)))
from sam_cffnet.cli import main
sys.argv = ['sam_cffnet', *sys.argv[1:]]
sys.exit(main())
"""


def test_kill_during_state_removal_then_rerun_finishes_the_clean_up(checkpoint: Path, tmp_path: Path) -> None:
    scene = write_geotiff(tmp_path / 'scene.tif', random_rgb(150, 150))
    out = tmp_path / 'out.tif'
    args = ['map', '--checkpoint', str(checkpoint), '--input', str(scene), '--output', str(out), *CLI_FAST,
            '--block-size', '48', '--polygons', 'gpkg']  # fmt: skip
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
    killed = subprocess.run([sys.executable, '-c', KILL_DURING_REMOVAL, *args], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=300)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    state = tmp_path / '.out.tif.map-state'
    assert state.exists() and out.exists()  # outputs complete, the state half removed
    raster = read(out)[0]
    run = run_cli(args)  # the same command
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'already complete' in run.stderr and not state.exists()
    np.testing.assert_array_equal(read(out)[0], raster)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.gpkg', 'out.summary.json', 'out.tif', 'scene.tif']


def test_a_copy_of_the_state_folder_keeps_working(tmp_path: Path) -> None:
    """A state folder moved with its outputs' folder still resumes: records hold names, not absolute paths."""
    pre = rgb_preprocessing()
    src = write_geotiff(tmp_path / 'scene.tif', random_rgb(150, 150))
    with pytest.raises(RuntimeError, match='interrupted'):
        map_scene(PixelModel(fail_after=6), src, tmp_path / 'a' / 'out.tif', preprocessing=pre, block_size=48, **FAST)
    records = _records(tmp_path / 'a' / '.out.tif.map-state')
    assert records and all(set(json.loads(r.read_text())) == {'window', 'files'} for r in records)
    assert all('/' not in name for r in records for name in json.loads(r.read_text())['files'])
    shutil.rmtree(tmp_path / 'a')
