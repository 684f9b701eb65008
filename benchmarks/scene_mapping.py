"""Scene mapping on this machine: peak memory when the scene grows 16x, and windows/s with 1 and 2 processes.

Two tables, each run in fresh processes (tiny random SAM-CFFNet: ``vit_tiny``, CFFD width 64):

1. **Memory** (``map_scene``, one process): peak RSS of the process during the mapping (Linux ``VmHWM``, reset
   with ``/proc/self/clear_refs`` after a warm-up map of the small scene), its increase over the RSS before, and
   the ratios large / small for a scene 16x larger in pixels, square (4 x 4) and wide (1 x 16).
2. **Processes** (``python -m sam_cffnet map``, the real command): the same scene mapped by 1 process and by N
   processes (``--trainer.devices N --trainer.strategy ddp``, gloo on CPU): windows, mapping seconds (the
   summary's ``seconds``: from the start of the work to the written COG, startup excluded), windows/s over all
   processes, the whole command's wall time, and the ratio to one process. The outputs are compared pixel for pixel.

    python benchmarks/scene_mapping.py                      # both tables (~5 min on a 2-core CPU)
    python benchmarks/scene_mapping.py --no-processes       # memory only
    python benchmarks/scene_mapping.py --small 256 --tile 64 --processes 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _memory import MIB, reset_peak, status_bytes


def write_scene(path: Path, height: int, width: int, strip: int = 256) -> None:
    """A 3-band uint8 GeoTIFF (UTM, 10 m, nodata 0 in a corner), written strip by strip."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    rng = np.random.default_rng(0)
    profile = {'driver': 'GTiff', 'height': height, 'width': width, 'count': 3, 'dtype': 'uint8', 'nodata': 0,
               'crs': 'EPSG:32648', 'transform': Affine(10, 0, 500_000, 0, -10, 3_000_000), 'tiled': True,
               'blockxsize': 256, 'blockysize': 256, 'compress': 'deflate'}  # fmt: skip
    with rasterio.open(path, 'w', **profile) as dst:
        for r in range(0, height, strip):
            h = min(strip, height - r)
            data = rng.integers(1, 256, (3, h, width), dtype=np.uint8)
            if r < 64:
                data[:, : max(0, 64 - r), :64] = 0
            dst.write(data, window=Window(0, r, width, h))


def tiny_task(tile: int) -> object:
    """A tiny random SAM-CFFNet task with the Bijie RGB pipeline."""
    import torch

    from sam_cffnet.datamodules import BijieDataModule
    from sam_cffnet.models import build_model
    from sam_cffnet.tasks.segmentation import SegmentationTask

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        task = SegmentationTask(build_model('sam_cffnet', variant='vit_tiny', input_size=None, decoder_channels=64))
    task.preprocessing = BijieDataModule(root='unused', tile_size=tile).preprocessing
    return task.eval()


def write_checkpoint(path: Path, tile: int) -> None:
    """Save :func:`tiny_task` as Lightning would."""
    import torch

    task = tiny_task(tile)
    ckpt = {'state_dict': task.state_dict(), 'hyper_parameters': dict(task.hparams)}
    task.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)


def memory_worker(args: argparse.Namespace) -> None:
    """Map one scene in this process and print a JSON line of measurements."""
    import torch

    torch.set_num_threads(args.threads)
    from sam_cffnet.inference import map_scene

    task = tiny_task(args.tile)
    settings = {'tile_size': args.tile, 'overlap': args.overlap, 'batch_size': args.batch, 'progress': False,
                'block_size': args.block_size, 'gdal_cache_mb': args.gdal_cache_mb, 'device': 'cpu',
                'overwrite': True}  # fmt: skip
    map_scene(task, args.warm, Path(args.output).with_name('warm.tif'), **settings)  # imports, kernels, Lightning
    before = reset_peak()
    t0 = time.perf_counter()
    summary = map_scene(task, args.scene, args.output, **settings)
    wall = time.perf_counter() - t0
    peak = status_bytes('VmHWM')
    print(json.dumps({
        'peak_rss_mib': peak / MIB, 'rss_before_mib': before / MIB, 'increase_mib': (peak - before) / MIB,
        'windows': summary['windows'], 'windows_per_second': summary['windows_per_second'], 'wall_s': wall,
        'blocks': summary['blocks'],
    }))  # fmt: skip


def _table(title: str, results: dict[str, dict], rows: list[tuple[str, str, str]]) -> None:
    names = list(results)
    w = max(len(label) for label, _, _ in rows)
    print(f'\n{title}\n')
    print(f'| {"":{w}} | ' + ' | '.join(f'{n:>16}' for n in names) + ' |')
    print('|' + '-' * (w + 2) + '|' + '|'.join('-' * 18 for _ in names) + '|')
    for label, key, fmt in rows:
        print(f'| {label:{w}} | ' + ' | '.join(f'{fmt.format(results[n][key]):>16}' for n in names) + ' |')


def memory_table(args: argparse.Namespace, tmp: Path) -> None:
    """Peak RSS, small vs 16x scenes."""
    s = args.small
    scenes = {'small': (s, s), 'large 4x4': (4 * s, 4 * s)}
    if not args.no_wide:
        scenes['wide 1x16'] = (s, 16 * s)
    results = {}
    warm = tmp / 'warm.tif'
    write_scene(warm, s, s)
    for name, (h, w) in scenes.items():
        scene = tmp / f'scene_{h}x{w}.tif'
        write_scene(scene, h, w)
        cmd = [sys.executable, __file__, '--worker', '--scene', str(scene), '--warm', str(warm),
               '--output', str(tmp / 'mem' / 'out.tif')]  # fmt: skip
        for key in ('tile', 'overlap', 'batch', 'threads', 'block_size', 'gdal_cache_mb'):
            cmd += [f'--{key.replace("_", "-")}', str(getattr(args, key))]
        env = {**os.environ, 'OMP_NUM_THREADS': str(args.threads), 'PYTHONWARNINGS': 'ignore'}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if out.returncode:
            sys.exit(f'{name} failed:\n{out.stderr}')
        results[name] = {'size': f'{h} x {w}', **json.loads(out.stdout.strip().splitlines()[-1])}
        print(f'  done: memory, {name} {results[name]["size"]}', file=sys.stderr)
    _table(
        f'memory: map_scene, tiny SAM-CFFNet, tile {args.tile}, overlap {args.overlap}, batch {args.batch}, block '
        f'{args.block_size} px, GDAL cache {args.gdal_cache_mb} MiB, {args.threads} torch thread(s), one process',
        results,
        [('scene (px)', 'size', '{}'), ('blocks', 'blocks', '{:d}'), ('windows predicted', 'windows', '{:d}'),
         ('windows / s (model)', 'windows_per_second', '{:.2f}'), ('wall time (s)', 'wall_s', '{:.1f}'),
         ('RSS before mapping (MiB)', 'rss_before_mib', '{:.1f}'), ('peak RSS (MiB)', 'peak_rss_mib', '{:.1f}'),
         ('peak - before (MiB)', 'increase_mib', '{:.1f}')],
    )  # fmt: skip
    base = results['small']
    for n in list(results)[1:]:
        r = results[n]
        print(f'\n{n} / small: pixels x16, peak RSS x{r["peak_rss_mib"] / base["peak_rss_mib"]:.3f}, '
              f'peak increase {r["increase_mib"]:.1f} vs {base["increase_mib"]:.1f} MiB')  # fmt: skip


def processes_table(args: argparse.Namespace, tmp: Path) -> None:
    """``python -m sam_cffnet map`` with 1 and N processes on the same scene (interleaved repeats, medians)."""
    import statistics

    import numpy as np
    import rasterio

    ckpt = tmp / 'tiny.ckpt'
    write_checkpoint(ckpt, args.tile)
    h, w = args.scene_size
    scene = tmp / f'proc_scene_{h}x{w}.tif'
    write_scene(scene, h, w)
    runs: dict[int, list[dict]] = {n: [] for n in args.processes}
    rasters = {}
    for rep in range(args.repeat):
        for n in args.processes:
            out = tmp / f'proc{n}_{rep}' / 'map.tif'
            cmd = [sys.executable, '-m', 'sam_cffnet', 'map', '--checkpoint', str(ckpt), '--input', str(scene),
                   '--output', str(out), '--tile-size', str(args.tile), '--overlap', str(args.overlap),
                   '--batch-size', str(args.batch), '--block-size', str(args.block_size), '--num-workers',
                   str(args.num_workers), '--quiet', '--trainer.accelerator', 'cpu',
                   '--trainer.devices', str(n)]  # fmt: skip
            if n > 1:
                cmd += ['--trainer.strategy', 'ddp']
            env = {**os.environ, 'OMP_NUM_THREADS': str(args.threads), 'PYTHONWARNINGS': 'ignore'}
            t0 = time.perf_counter()
            run = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            wall = time.perf_counter() - t0
            if run.returncode:
                sys.exit(f'{n} process(es) failed:\n{run.stderr}')
            summary = json.loads(out.with_name('map.summary.json').read_text())
            with rasterio.open(out) as src:
                rasters[(n, rep)] = src.read()
            runs[n].append({'windows': summary['windows'], 'seconds': summary['seconds'],
                            'wps': summary['windows'] / summary['seconds'], 'command_s': wall,
                            'ranks': len(summary['ranks']), 'model_wps': summary['windows_per_second']})  # fmt: skip
            print(f'  done: {n} process(es), repeat {rep + 1}', file=sys.stderr)
    results = {}
    for n, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        med['range'] = f'{min(r["wps"] for r in rs):.2f}-{max(r["wps"] for r in rs):.2f}'
        results[f'{n} process{"es" if n > 1 else ""}'] = med
    base = next(iter(results.values()))
    for r in results.values():
        r['ratio'] = r['wps'] / base['wps']
    _table(
        f'processes: python -m sam_cffnet map, scene {h} x {w} px, tile {args.tile}, overlap {args.overlap}, batch '
        f'{args.batch}, block {args.block_size} px, {args.threads} torch thread(s) per process, '
        f'{os.cpu_count()} CPU cores; median of {args.repeat} interleaved runs',
        results,
        [('processes that wrote blocks', 'ranks', '{:.0f}'), ('windows predicted', 'windows', '{:.0f}'),
         ('mapping time (s)', 'seconds', '{:.1f}'), ('windows / s (all processes)', 'wps', '{:.2f}'),
         ('  min-max over repeats', 'range', '{}'), ('windows / s / process (model)', 'model_wps', '{:.2f}'),
         ('ratio to 1 process', 'ratio', '{:.2f}'), ('whole command (s)', 'command_s', '{:.1f}')],
    )  # fmt: skip
    first = next(iter(rasters.values()))
    same = all(np.array_equal(first, r) for r in rasters.values())
    print(f'\noutputs identical pixel for pixel across process counts and repeats: {same}')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--small', type=int, default=512, help='edge of the small square scene of the memory table (px)')
    p.add_argument('--tile', type=int, default=128)
    p.add_argument('--overlap', type=int, default=32)
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--block-size', type=int, default=512, help='block edge (px)')
    p.add_argument('--gdal-cache-mb', type=int, default=32)
    p.add_argument('--threads', type=int, default=1, help='torch threads per process')
    p.add_argument('--num-workers', type=int, default=1, help='DataLoader readers per process (processes table)')
    p.add_argument('--processes', type=int, nargs='+', default=[1, 2], help='process counts of the second table')
    p.add_argument('--scene-size', type=int, nargs=2, default=[768, 1024], help='scene of the processes table')
    p.add_argument('--repeat', type=int, default=3, help='interleaved repeats of the processes table (medians)')
    p.add_argument('--no-wide', action='store_true', help='skip the 1 x 16 wide scene')
    p.add_argument('--no-memory', action='store_true', help='skip the memory table')
    p.add_argument('--no-processes', action='store_true', help='skip the processes table')
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--scene', help=argparse.SUPPRESS)
    p.add_argument('--warm', help=argparse.SUPPRESS)
    p.add_argument('--output', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        memory_worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_memory:
            memory_table(args, Path(tmp))
        if not args.no_processes:
            processes_table(args, Path(tmp))


if __name__ == '__main__':
    main()
