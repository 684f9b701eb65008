#!/usr/bin/env python3
"""Benchmark the landslide datamodules: train-loader throughput and memory while tiling a large GVLM-like scene.

1. Tiles per second from each datamodule's train loader, measured over the SECOND epoch (after the first one
   warmed caches), including ``on_after_batch_transfer`` (normalization) on the CPU, ``num_workers=0``.
   Data: synthetic files in each real layout, generated into a temporary folder.
2. Peak memory while tiling GVLM-sized scenes generated on the fly (up to 10,000 x 7,500 px): every tile of the
   scene is read through :class:`sam_cffnet.datasets.GVLM` in a fresh subprocess, and the peak RSS above the
   post-import baseline is reported next to a whole-scene decode (what the windowed reader avoids).

Usage::

    python benchmarks/datamodules.py            # full run (a few minutes on 2 cores)
    python benchmarks/datamodules.py --quick    # smaller data
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _memory import MIB, reset_peak, status_bytes

GVLM_SITES = ('A Luoi_Vietnam', 'Asakura_Japan', 'Kupang_Indonesia', 'Shimen_China')


# ----------------------------------------------------------------------------- synthetic data
def _scene(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocky RGB scene (compresses like real imagery rather than noise) and a 0/255 reference map."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 200, (h // 64 + 1, w // 64 + 1, 3), dtype=np.uint8)
    img = np.repeat(np.repeat(coarse, 64, 0), 64, 1)[:h, :w]
    img = img + rng.integers(0, 8, (1, w, 3), dtype=np.uint8)  # a little texture, cheap to generate
    ref = ((img[..., 0] > 150) * 255).astype(np.uint8)
    return img, ref


def _write_gvlm(root: Path, sites: dict[str, tuple[int, int]]) -> Path:
    from PIL import Image

    for i, (site, (h, w)) in enumerate(sites.items()):
        d = root / 'GVLM_Object_Extraction' / site
        d.mkdir(parents=True, exist_ok=True)
        img, ref = _scene(h, w, i)
        Image.fromarray(img).save(d / 'im.png', compress_level=1)
        Image.fromarray(ref).save(d / 'ref.png', compress_level=1)
        del img, ref
    return root


def _write_l4s(root: Path, n: int) -> Path:
    import h5py

    rng = np.random.default_rng(0)
    for sub in ('img', 'mask'):
        (root / 'TrainData' / sub).mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        with h5py.File(root / 'TrainData' / 'img' / f'image_{i}.h5', 'w') as f:
            f.create_dataset('img', data=rng.uniform(0.1, 4, (128, 128, 14)))
        with h5py.File(root / 'TrainData' / 'mask' / f'mask_{i}.h5', 'w') as f:
            f.create_dataset('mask', data=(rng.random((128, 128)) > 0.9).astype(np.uint8))
    return root


def _write_reference(root: Path, n: int) -> Path:
    import h5py

    rng = np.random.default_rng(0)
    for split, k in (('train', n), ('val', max(2, n // 4))):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(k):
            with h5py.File(root / split / f'tile_{i:04d}.h5', 'w') as f:
                f.create_dataset('image', data=rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
                f.create_dataset('label', data=(rng.random((256, 256)) > 0.8).astype(np.uint8) * 255)
    return root


# ----------------------------------------------------------------------------- 1. throughput
def _throughput(dm: object) -> tuple[int, float]:
    dm.setup('fit')  # type: ignore[attr-defined]
    loader = dm.train_dataloader()  # type: ignore[attr-defined]
    for batch in loader:  # first epoch: warm-up (file caches, GDAL block cache)
        dm.on_after_batch_transfer(batch, 0)  # type: ignore[attr-defined]
    n, t0 = 0, time.perf_counter()
    for batch in loader:
        out = dm.on_after_batch_transfer(batch, 0)  # type: ignore[attr-defined]
        n += out['image'].shape[0]
    return n, time.perf_counter() - t0


def bench_throughput(tmp: Path, quick: bool) -> list[dict[str, object]]:
    from sam_cffnet.datamodules import (
        BijieDataModule,
        GVLMDataModule,
        Landslide4SenseDataModule,
        ReferenceTilesDataModule,
    )
    from sam_cffnet.datasets import make_demo_bijie

    n = 32 if quick else 96
    bijie = make_demo_bijie(tmp / 'bijie', num_landslide=n // 2, num_non_landslide=n // 4, size_range=(150, 400))
    l4s = _write_l4s(tmp / 'l4s', n)
    ref = _write_reference(tmp / 'ref', n)
    side = (1024, 768) if quick else (2048, 1536)
    gvlm = _write_gvlm(tmp / 'gvlm', {s: side for s in GVLM_SITES})
    common = {'batch_size': 8, 'num_workers': 0, 'tile_size': 256}
    cases = [
        ('Bijie (resize chips -> 256)', BijieDataModule(bijie, split_ratios=(1, 0, 0), **common)),
        ('Bijie (pad / window 256)', BijieDataModule(bijie, chip_mode='pad', split_ratios=(1, 0, 0), **common)),
        ('L4S (128 -> 256, RGB)', Landslide4SenseDataModule(l4s, val_ratio=0.0, test_ratio=0.0, **common)),
        ('L4S (128 -> 256, 14 bands)',
         Landslide4SenseDataModule(l4s, bands='all', val_ratio=0, test_ratio=0, **common)),
        ('GVLM (PNG windows, shuffled)', GVLMDataModule(gvlm, split_mode='tile', split_ratios=(1, 0, 0), **common)),
        ('GVLM (tiled-TIFF cache)', GVLMDataModule(gvlm, split_mode='tile', split_ratios=(1, 0, 0),
                                                   cache_dir=str(tmp / 'gvlm_cache'), **common)),
        ('ReferenceTiles (H5 256)', ReferenceTilesDataModule(ref, **common)),
    ]  # fmt: skip
    rows = []
    for name, dm in cases:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            tiles, secs = _throughput(dm)
        rows.append({'datamodule': name, 'tiles': tiles, 'seconds': secs, 'tiles_per_s': tiles / secs})
    return rows


# ----------------------------------------------------------------------------- 2. memory


def _child(mode: str, root: str) -> None:
    """Run in a subprocess: import, reset the peak RSS, do the work, print JSON."""
    import warnings

    from sam_cffnet.datasets import GVLM
    from sam_cffnet.datasets.utils import cache_as_tiled_tiff

    warnings.simplefilter('ignore')
    base = reset_peak()
    t0 = time.perf_counter()
    tiles = 0
    if mode == 'tiles':
        ds = GVLM(root, tile_size=256)
        for i in range(len(ds)):  # row-major order, every tile of the scene
            s = ds[i]
            tiles += 1
            del s
    elif mode == 'cache':
        site = next((Path(root) / 'GVLM_Object_Extraction').iterdir())
        cache_as_tiled_tiff(site / 'im.png', Path(root) / 'cache' / 'im.tif', [1, 2, 3])
    elif mode == 'whole':
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None
        site = next((Path(root) / 'GVLM_Object_Extraction').iterdir())
        with Image.open(site / 'im.png') as im:
            arr = np.asarray(im)
        tiles = int(arr.shape[0] > 0)
    secs = time.perf_counter() - t0
    print(
        json.dumps({'base_mib': base / MIB, 'peak_mib': status_bytes('VmHWM') / MIB, 'tiles': tiles, 'seconds': secs})
    )


def bench_memory(tmp: Path, quick: bool) -> list[dict[str, object]]:
    sizes = [(1875, 2500), (3750, 5000)] + ([] if quick else [(7500, 10000)])
    rows = []
    for h, w in sizes:
        root = _write_gvlm(tmp / f'scene_{w}x{h}', {'Big Scene_Benchmark': (h, w)})
        for mode in ('tiles', 'cache', 'whole'):
            out = subprocess.run(
                [sys.executable, __file__, '--child', mode, str(root)], capture_output=True, text=True, check=True
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(
                {'scene': f'{w} x {h}', 'area': w * h, 'mode': mode, **r, 'delta_mib': r['peak_mib'] - r['base_mib']}
            )
        for p in (root / 'GVLM_Object_Extraction').rglob('*.png'):
            p.unlink()
    return rows


# ----------------------------------------------------------------------------- main
def main() -> None:
    """Run both benchmarks and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='smaller data (CI smoke run)')
    parser.add_argument('--child', nargs=2, metavar=('MODE', 'ROOT'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = bench_throughput(tmp, args.quick)
        fastest = max(r['tiles_per_s'] for r in rows)  # type: ignore[type-var]
        print('\n## Train-loader throughput (2nd epoch, batch 8, num_workers=0, tile 256, CPU normalization)\n')
        print(f'| {"datamodule":<30} | tiles | seconds | tiles/s | ratio to fastest |')
        print(f'|{"-" * 32}|------:|--------:|--------:|-----------------:|')
        for r in rows:
            print(f'| {r["datamodule"]:<30} | {r["tiles"]:>5} | {r["seconds"]:7.2f} | {r["tiles_per_s"]:7.1f} '
                  f'| {r["tiles_per_s"] / fastest:16.2f} |')  # type: ignore[operator]  # fmt: skip
        mem = bench_memory(tmp, args.quick)
        print('\n## Peak memory while tiling one GVLM-sized scene (256 px tiles; RSS above the post-import baseline)\n')
        head = '| scene (W x H)  | mode                               | tiles | seconds | peak delta MiB '
        print(head + '| ratio to smallest | area ratio |')
        print(f'|{"-" * 16}|{"-" * 36}|------:|--------:|---------------:|------------------:|-----------:|')
        labels = {'tiles': 'GVLM windowed reads (all tiles)', 'cache': 'tiled-TIFF cache conversion',
                  'whole': 'whole-scene PIL decode (avoided)'}  # fmt: skip
        first = {r['mode']: r['delta_mib'] for r in mem if r['scene'] == mem[0]['scene']}
        area0 = mem[0]['area']
        for r in mem:
            ratio = r['delta_mib'] / max(first[r['mode']], 1e-3)  # type: ignore[operator]
            area = r['area'] / area0  # type: ignore[operator]
            print(f'| {r["scene"]:<14} | {labels[r["mode"]]:<34} | {r["tiles"]:>5} | {r["seconds"]:7.2f} '
                  f'| {r["delta_mib"]:14.1f} | {ratio:17.2f} | {area:10.1f} |')  # fmt: skip


if __name__ == '__main__':
    main()
