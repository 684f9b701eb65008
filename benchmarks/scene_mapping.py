"""Scene mapping: peak memory and speed on a small scene and on scenes 16x larger (tiny random SAM-CFFNet).

Each scene is mapped in a fresh process (so peak RSS is that run's own). Printed side by side:

* peak RSS of the whole process during ``map_scene`` (Linux ``VmHWM``, reset with ``/proc/self/clear_refs`` after
  the model is built and warmed up), and its increase over the RSS just before mapping;
* windows per second (model time only) and wall time.

The large scenes are 16x the small one in pixels: 4x4 (square) and 1x16 (wide, processed in column blocks of
``--block-width``). Peak memory ratios large / small should stay close to 1.

    python benchmarks/scene_mapping.py                 # 512 px vs 2048 px and 512 x 8192 px, 128 px tiles
    python benchmarks/scene_mapping.py --small 256 --tile 64
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


def _status_kib(key: str) -> int:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key + ':'):
            return int(line.split()[1])
    raise KeyError(key)


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


def worker(args: argparse.Namespace) -> None:
    """Map one scene in this process and print a JSON line of measurements."""
    import torch

    torch.set_num_threads(args.threads)
    from sam_cffnet.datamodules import BijieDataModule
    from sam_cffnet.inference import map_scene
    from sam_cffnet.tasks.segmentation import SegmentationTask

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        task = SegmentationTask(
            model='sam_cffnet', model_args={'variant': 'vit_tiny', 'input_size': None}, in_channels=3
        ).eval()
    task.preprocessing = BijieDataModule(root='unused', tile_size=args.tile).preprocessing_config()
    with torch.inference_mode():  # warm-up: first calls allocate kernels/caches that are not the mapper's
        task.model(torch.rand(args.batch, 3, args.tile, args.tile))
    before = _status_kib('VmRSS')
    Path('/proc/self/clear_refs').write_text('5')  # reset VmHWM to the current RSS
    t0 = time.perf_counter()
    summary = map_scene(
        task, args.scene, args.output, tile_size=args.tile, overlap=args.overlap, batch_size=args.batch,
        precision=args.precision, block_width=args.block_width, progress=False, overwrite=True, device='cpu',
    )  # fmt: skip
    wall = time.perf_counter() - t0
    peak = _status_kib('VmHWM')
    print(json.dumps({
        'peak_rss_mib': peak / 1024, 'rss_before_mib': before / 1024, 'increase_mib': (peak - before) / 1024,
        'windows': summary['windows'], 'windows_per_second': summary['windows_per_second'], 'wall_s': wall,
        'column_blocks': summary['column_blocks'],
    }))  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--small', type=int, default=512, help='edge of the small square scene (px)')
    p.add_argument('--tile', type=int, default=128)
    p.add_argument('--overlap', type=int, default=32)
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--precision', default='32')
    p.add_argument('--threads', type=int, default=1, help='torch threads (1 = stable numbers on a shared machine)')
    p.add_argument('--block-width', type=int, default=2048, help='column block of map_scene (px)')
    p.add_argument('--no-wide', action='store_true', help='skip the 1 x 16 wide scene')
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--scene', help=argparse.SUPPRESS)
    p.add_argument('--output', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    s = args.small
    scenes = {'small': (s, s), 'large 4x4': (4 * s, 4 * s)}
    if not args.no_wide:
        scenes['wide 1x16'] = (s, 16 * s)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (h, w) in scenes.items():
            scene = Path(tmp) / f'scene_{h}x{w}.tif'
            write_scene(scene, h, w)
            cmd = [sys.executable, __file__, '--worker', '--scene', str(scene), '--output', str(Path(tmp) / 'out.tif')]
            for key in ('tile', 'overlap', 'batch', 'precision', 'threads', 'block_width'):
                cmd += [f'--{key.replace("_", "-")}', str(getattr(args, key))]
            env = {**os.environ, 'OMP_NUM_THREADS': str(args.threads)}
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if out.returncode:
                sys.exit(f'{name} failed:\n{out.stderr}')
            results[name] = {'size': f'{h} x {w}', **json.loads(out.stdout.strip().splitlines()[-1])}
            print(f'  done: {name} {results[name]["size"]}', file=sys.stderr)
    names = list(results)
    rows = [
        ('scene (px)', 'size', '{}'),
        ('windows predicted', 'windows', '{:d}'),
        ('column blocks', 'column_blocks', '{:d}'),
        ('windows / s', 'windows_per_second', '{:.2f}'),
        ('wall time (s)', 'wall_s', '{:.1f}'),
        ('RSS before mapping (MiB)', 'rss_before_mib', '{:.1f}'),
        ('peak RSS (MiB)', 'peak_rss_mib', '{:.1f}'),
        ('peak - before (MiB)', 'increase_mib', '{:.1f}'),
    ]
    print(f'\nscene mapping, tiny SAM-CFFNet (vit_tiny, random), tile {args.tile}, overlap {args.overlap}, '
          f'batch {args.batch}, precision {args.precision}, {args.threads} torch thread(s), '
          f'block width {args.block_width}\n')  # fmt: skip
    header = f'| {"":26} | ' + ' | '.join(f'{n:>16}' for n in names) + ' |'
    print(header)
    print('|' + '-' * 28 + '|' + '|'.join('-' * 18 for _ in names) + '|')
    for label, key, fmt in rows:
        print(f'| {label:26} | ' + ' | '.join(f'{fmt.format(results[n][key]):>16}' for n in names) + ' |')
    base = results['small']
    for n in names[1:]:
        r = results[n]
        print(
            f'\n{n} / small: pixels x16, peak RSS x{r["peak_rss_mib"] / base["peak_rss_mib"]:.3f}, '
            f'peak increase {r["increase_mib"]:.1f} vs {base["increase_mib"]:.1f} MiB, '
            f'windows/s x{r["windows_per_second"] / base["windows_per_second"]:.2f}'
        )


if __name__ == '__main__':
    main()
