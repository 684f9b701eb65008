#!/usr/bin/env python3
"""Benchmark the own-data loader (InventoryDataModule) against torchgeo's own GeoDataset pipeline.

1. Training-loader throughput, side by side in one run: batches of 8 tiles of 256 px, 3 bands, ``num_workers=0``,
   over the SAME data (UTM GeoTIFF scenes + landslide polygons in an EPSG:4326 GeoJSON):

   * torchgeo: ``RasterDataset & VectorDataset`` (IntersectionDataset) sampled by ``RandomGeoSampler`` through a
     ``DataLoader(collate_fn=stack_samples)``: the textbook torchgeo recipe (it re-reads, reprojects and rasterizes
     the polygon file for every tile);
   * ours: ``InventoryDataModule.train_dataloader()`` (polygons rasterized once per scene by torchgeo's
     VectorDataset into cached GeoTIFFs; per tile two windowed raster reads); also with the datamodule's
     preprocessing (``on_after_batch_transfer``) included.

   The loaders alternate for ``--rounds`` rounds after a warm-up batch each; the table gives the median. Two label
   files: the scenes' own 40 polygons, and a regional inventory (``--regional`` more polygons outside the scenes).
2. Memory as the number of scenes grows: for 1, 2, 4, 8 scenes, a fresh subprocess builds each loader (ours: cold
   cache, i.e. label rasterization included, then once more with the cache) and reads ``--batches`` batches; peak
   RSS above the post-import baseline and setup times.

Usage::

    python benchmarks/inventory_loader.py            # 2048 px scenes (a few minutes on 2 cores)
    python benchmarks/inventory_loader.py --quick    # 1024 px scenes, up to 4 scenes
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from _memory import MIB, reset_peak, status_bytes

REPO = Path(__file__).resolve().parents[1]
BATCH, TILE = 8, 256


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location('inventory_data', REPO / 'tests' / 'data' / 'inventory' / 'data.py')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_data(root: Path, scenes: int, size: int, regional: int = 0) -> dict[str, Any]:
    """``scenes`` UTM scenes of ``size`` px (2 m) with 20 landslides each; polygons in EPSG:4326 GeoJSON.

    ``regional`` > 0 adds that many landslide polygons elsewhere in the region (outside the scenes, within 0.5
    degrees), as in a regional or national inventory delivered with the scenes of one area.
    """
    gen = _generator()
    data = gen.make_inventory(root, scenes=scenes, size=size, landslides_per_scene=20, seed=1)
    if regional:
        import geopandas as gpd
        import numpy as np

        frame = gpd.read_file(data['labels'])
        rng = np.random.default_rng(0)
        x0, y0 = frame.total_bounds[2] + 0.05, frame.total_bounds[1]
        centres = rng.uniform(0, 0.5, (regional, 2)) + np.array([x0, y0])
        blobs = [gen.landslide_polygon(rng, float(x), float(y), 0.0005) for x, y in centres]
        gen.write_vector(Path(data['labels']), list(frame.geometry) + blobs, 'EPSG:4326')
    return data


# ----------------------------------------------------------------------------- the two loaders
def torchgeo_loader(data: dict[str, Any], length: int) -> Any:
    """torchgeo's own recipe: RasterDataset & VectorDataset, RandomGeoSampler, DataLoader(stack_samples)."""
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, VectorDataset, stack_samples
    from torchgeo.samplers import RandomGeoSampler

    class Scenes(RasterDataset):
        filename_glob = '*.tif'

    scenes = Scenes(str(Path(data['images'][0]).parent))
    labels = VectorDataset(data['labels'], crs=scenes.crs, res=scenes.res)
    dataset = scenes & labels
    sampler = RandomGeoSampler(dataset, size=TILE, length=length)
    return DataLoader(dataset, batch_size=BATCH, sampler=sampler, collate_fn=stack_samples, num_workers=0)


def our_datamodule(data: dict[str, Any], length: int, cache: Path) -> Any:
    """InventoryDataModule with the same tile size and batch size."""
    from sam_cffnet.datamodules import InventoryDataModule

    return InventoryDataModule(
        images=data['images'], labels=data['labels'], tile_size=TILE, block_size=2 * TILE, batch_size=BATCH,
        num_workers=0, samples_per_epoch=length, split_ratios=(0.8, 0.1, 0.1), cache_dir=str(cache), progress=False,
    )  # fmt: skip


def _time_batches(loader: Any, batches: int, post: Any = None) -> float:
    """Seconds per tile over ``batches`` batches (after one warm-up batch)."""
    it = iter(loader)
    first = next(it)
    if post is not None:
        post(first)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        batch = next(it)
        if post is not None:
            batch = post(batch)
        n += batch['image'].shape[0]
    return (time.perf_counter() - t0) / n


def bench_throughput(tmp: Path, size: int, rounds: int, batches: int, regional: int) -> list[dict[str, Any]]:
    data = make_data(tmp / f'throughput_{regional}', scenes=2, size=size, regional=regional)
    length = (batches + 1) * BATCH
    dm = our_datamodule(data, length, tmp / 'cache')
    dm.setup('fit')
    baseline = torchgeo_loader(data, length)
    post = lambda b: dm.on_after_batch_transfer(b, 0)  # noqa: E731
    times: dict[str, list[float]] = {'torchgeo': [], 'ours': [], 'ours + preprocessing': []}
    for r in range(rounds):
        times['torchgeo'].append(_time_batches(baseline, batches))
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(r)
        times['ours'].append(_time_batches(loader, batches))
        loader.sampler.set_epoch(r + 100)
        times['ours + preprocessing'].append(_time_batches(loader, batches, post))
    base = statistics.median(times['torchgeo'])
    polygons = 2 * 20 + regional
    return [
        {'loader': name, 'polygons': polygons, 'tiles_per_s': 1 / statistics.median(t),
         'speedup': base / statistics.median(t), 'rounds': [round(1 / x, 1) for x in t]}
        for name, t in times.items()
    ]  # fmt: skip


# ----------------------------------------------------------------------------- memory (child processes)
def _child(kind: str, root: str, batches: int) -> None:
    warnings.simplefilter('ignore')
    import torch  # noqa: F401  (imports before the baseline)
    import torchgeo.datasets  # noqa: F401

    import sam_cffnet.datamodules  # noqa: F401

    data = json.loads((Path(root) / 'data.json').read_text())
    base = reset_peak()
    t0 = time.perf_counter()
    length = (batches + 1) * BATCH
    warm = None
    if kind == 'ours':
        cache = Path(root) / f'cache_{time.time_ns()}'
        dm = our_datamodule(data, length, cache)
        dm.setup('fit')
        loader = dm.train_dataloader()
        setup = time.perf_counter() - t0
        t1 = time.perf_counter()
        our_datamodule(data, length, cache).setup('fit')  # a second run over the same inputs: cache reused
        warm = time.perf_counter() - t1
    else:
        loader = torchgeo_loader(data, length)
        setup = time.perf_counter() - t0
    per_tile = _time_batches(loader, batches)
    print(json.dumps({'base_mib': base / MIB, 'peak_mib': status_bytes('VmHWM') / MIB, 'setup_s': setup,
                      'setup_warm_s': warm, 'tiles_per_s': 1 / per_tile}))  # fmt: skip


def bench_memory(tmp: Path, size: int, counts: list[int], batches: int) -> list[dict[str, Any]]:
    rows = []
    for n in counts:
        root = tmp / f'scenes_{n}'
        data = make_data(root, scenes=n, size=size)
        (root / 'data.json').write_text(json.dumps({k: data[k] for k in ('images', 'labels')}))
        row: dict[str, Any] = {'scenes': n, 'megapixels': n * size * size / 1e6}
        for kind in ('torchgeo', 'ours'):
            out = subprocess.run([sys.executable, __file__, '--child', kind, str(root), str(batches)],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            r = json.loads(out.stdout.strip().splitlines()[-1])
            row[kind] = {**r, 'delta_mib': r['peak_mib'] - r['base_mib']}
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- main
def main() -> None:
    """Run both benchmarks and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='1024 px scenes, up to 4 scenes')
    parser.add_argument('--rounds', type=int, default=3, help='alternating rounds of the throughput comparison')
    parser.add_argument('--batches', type=int, default=12, help='timed batches per round')
    parser.add_argument(
        '--regional',
        type=int,
        default=2000,
        help='polygons of the "regional inventory" case (outside the scenes; 0 = skip that case)',
    )
    parser.add_argument('--json', help='also write the results as JSON to this file')
    parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], int(args.child[2]))
        return
    warnings.simplefilter('ignore')
    import torch

    torch.set_num_threads(1)
    size = 1024 if args.quick else 2048
    counts = [1, 2, 4] if args.quick else [1, 2, 4, 8]
    with tempfile.TemporaryDirectory(prefix='inventory_bench_') as tmp:
        t0 = time.perf_counter()
        throughput = []
        for regional in [0] + ([args.regional] if args.regional else []):
            throughput += bench_throughput(Path(tmp), size, args.rounds, args.batches, regional)
        memory = bench_memory(Path(tmp), size, counts, args.batches)
        total = time.perf_counter() - t0
    print(
        f'\nTraining loader, batch {BATCH} x {TILE} px x 3 bands, num_workers=0, 2 scenes of {size} px '
        f'(UTM, 2 m) + EPSG:4326 polygons; median of {args.rounds} alternating rounds of {args.batches} batches\n'
    )
    print('| polygons in the label file | loader | tiles/s | vs torchgeo | rounds (tiles/s) |')
    print('|---|---|---|---|---|')
    names = {'torchgeo': 'torchgeo RandomGeoSampler + DataLoader (RasterDataset & VectorDataset)',
             'ours': 'InventoryDataModule.train_dataloader()',
             'ours + preprocessing': 'InventoryDataModule + on_after_batch_transfer'}  # fmt: skip
    for r in throughput:
        print(
            f'| {r["polygons"]:,} | {names[r["loader"]]} | {r["tiles_per_s"]:.1f} | {r["speedup"]:.2f}x | '
            f'{r["rounds"]} |'
        )
    print(
        f'\nMemory and setup as the number of {size} px scenes grows (fresh process each; ours builds its label '
        f'cache cold)\n'
    )
    print('| scenes | Mpx | torchgeo peak MiB | ours peak MiB | torchgeo setup s | ours setup s (cold / cached) |')
    print('|---|---|---|---|---|---|')
    for r in memory:
        t, o = r['torchgeo'], r['ours']
        print(
            f'| {r["scenes"]} | {r["megapixels"]:.1f} | {t["delta_mib"]:.0f} | {o["delta_mib"]:.0f} | '
            f'{t["setup_s"]:.2f} | {o["setup_s"]:.2f} / {o["setup_warm_s"]:.2f} |'
        )
    print(
        f'\n(total {total:.0f} s; peak MiB = peak RSS above the post-import baseline; the JSON output also holds '
        f"each child's tiles/s over its first batches, too noisy on a shared machine to tabulate)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({'throughput': throughput, 'memory': memory}, indent=1))


if __name__ == '__main__':
    main()
