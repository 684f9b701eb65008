"""GPU benchmark: SAM encoder tiles/s (ViT-B/L/H at 1024 px), `map` windows/s, head training steps/s, peak memory.

One script, one table, under 5 minutes on one H200 (``python benchmarks/gpu.py``). Random weights at the real sizes
(speed does not depend on the values); every row is warmed up first (cuDNN autotuning, ``torch.compile``'s first
call), the device is synchronized before each timer is read, and each row reports its batch size, precision,
attention kernel, throughput, peak GPU memory (``torch.cuda.max_memory_allocated``) and the fraction of the
physical limit it reaches: the row's FLOPs per item (counted once with ``torch.utils.flop_counter``) at
``--peak-tflops`` (H200 dense bf16: about 790 TFLOP/s, so ViT-L at 1024 px, ~3 TFLOP per tile, could run at
~3.8 ms per tile).

Rows:

* ``encoder``: the frozen SAM image encoder (``SAMEncoder``, tapped blocks, no neck) on 1024 px tiles: fp32 with
  segment-anything's attention, bf16 autocast, bf16 + SDPA (memory-efficient attention with the decomposed
  relative-position bias), and bf16 + SDPA + ``torch.compile`` (``--compile-variants``, ViT-L by default);
* ``train``: SAM-CFFNet (ViT-L, 256 px tiles resized to 1024, bf16 + SDPA) training steps of the CFFD head with
  AdamW and 0.5 BCE + 0.5 Dice, recomputing the frozen encoder every step vs reading the four feature levels from
  a feature cache (float16 features in pinned host memory copied to the device each step, as
  ``CachedFeatureDataModule`` delivers them; disk reads not included);
* ``map``: ``sam_cffnet.inference.map_scenes`` over a synthetic 3-band GeoTIFF (256 px windows, overlap 64,
  bf16-mixed, SDPA, DataLoader readers): windows/s from the start of the work to the written COG. Needs rasterio
  and Lightning; skipped (with a note) when they are missing.

The encoder and training rows need only torch, segment-anything and timm (when segmentation-models-pytorch is not
installed, the SAM model modules are imported without ``sam_cffnet.models``' package ``__init__``, which imports
every baseline).

    python benchmarks/gpu.py                      # the full table on a GPU (< 5 min on an H200)
    python benchmarks/gpu.py --tiny               # CPU smoke run: vit_tiny at 64 px, every row, seconds
    python benchmarks/gpu.py --variants vit_l --no-map --csv gpu.csv
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _import_models() -> Any:
    """``sam_cffnet.models`` submodules, without the package ``__init__`` when a baseline dependency is missing."""
    if importlib.util.find_spec('sam_cffnet') is None:
        sys.path.insert(0, str(REPO))
    if 'sam_cffnet.models' not in sys.modules and not _importable('segmentation_models_pytorch'):
        import sam_cffnet

        pkg = types.ModuleType('sam_cffnet.models')
        pkg.__path__ = [str(Path(sam_cffnet.__file__).parent / 'models')]
        sys.modules['sam_cffnet.models'] = pkg  # the SAM modules below import no baseline
    from sam_cffnet.models.encoders.attention import configure_encoder_speed
    from sam_cffnet.models.encoders.sam import SAMEncoder
    from sam_cffnet.models.sam_cffnet import SAMCFFNet

    return types.SimpleNamespace(SAMEncoder=SAMEncoder, SAMCFFNet=SAMCFFNet, configure=configure_encoder_speed)


@dataclass
class Row:
    """One line of the table."""

    group: str
    name: str
    batch: int
    precision: str
    attention: str
    compiled: bool
    unit: str
    per_second: float
    flops_per_item: float | None
    peak_mib: float | None
    note: str = ''


class Device:
    """Timing and memory on the chosen device."""

    def __init__(self, name: str) -> None:
        self.device = torch.device(name)
        self.cuda = self.device.type == 'cuda'

    def sync(self) -> None:
        """Wait for queued work."""
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        """Start a peak-memory measurement."""
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mib(self) -> float | None:
        """Peak allocated memory since :meth:`reset_peak` (``None`` off GPU)."""
        return torch.cuda.max_memory_allocated(self.device) / 2**20 if self.cuda else None

    def autocast(self, bf16: bool) -> Any:
        """bf16 autocast on this device (or nothing)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def time(self, step: Callable[[], Any], warmup: int, iters: int) -> float:
        """Seconds per call of ``step`` (median of ``iters`` after ``warmup``)."""
        for _ in range(warmup):
            step()
        self.sync()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            step()
            self.sync()
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]


def count_flops(fn: Callable[[], Any]) -> float:
    """FLOPs (2 x multiply-adds of matmuls/convolutions/attention) of one call."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def reference_flops(m: Any, encoder: Any, fn: Callable[[], Any]) -> float:
    """FLOPs of ``fn`` counted with segment-anything's attention (plain matmuls: every attention FLOP is seen),
    then the encoder's speed options are restored."""
    opts = encoder.speed_options
    m.configure(encoder, 'reference', opts.autocast, opts.channels_last)
    try:
        with torch.inference_mode():
            return count_flops(fn)
    finally:
        m.configure(encoder, opts.attention, opts.autocast, opts.channels_last)


# ---------------------------------------------------------------------------------------------- rows
ENCODER_CONFIGS = [  # name, attention, bf16, compile
    ('fp32', 'reference', False, False),
    ('bf16', 'reference', True, False),
    ('bf16 + SDPA', 'sdpa', True, False),
    ('bf16 + SDPA + compile', 'sdpa', True, True),
]


def encoder_rows(args: argparse.Namespace, dev: Device, m: Any) -> list[Row]:
    """Encoder tiles/s per variant and configuration."""
    rows = []
    for variant in args.variants:
        torch.manual_seed(0)
        enc = m.SAMEncoder(variant, input_size=args.size).to(dev.device).eval()
        x = torch.rand(args.batch, 3, args.size, args.size, device=dev.device)
        flops = reference_flops(m, enc, lambda enc=enc, x=x: enc(x[:1]))
        for name, attention, bf16, compiled in ENCODER_CONFIGS:
            if compiled and (variant not in args.compile_variants or args.no_compile):
                continue
            m.configure(enc, attention, 'none', False)
            fn = torch.compile(enc) if compiled else enc

            def step(fn: Any = fn, bf16: bool = bf16, x: torch.Tensor = x) -> None:
                with torch.inference_mode(), dev.autocast(bf16):
                    fn(x).features[-1].sum()

            dev.reset_peak()
            seconds = dev.time(step, args.warmup + (2 if compiled else 0), args.iters)
            rows.append(Row('encoder', f'{variant} {args.size} px', args.batch, 'bf16' if bf16 else 'fp32', attention,
                            compiled, 'tiles', args.batch / seconds, flops, dev.peak_mib()))  # fmt: skip
            print(f'  {rows[-1].name:<16} {name:<22} {rows[-1].per_second:9.2f} tiles/s', file=sys.stderr, flush=True)
        del enc
    return rows


def train_rows(args: argparse.Namespace, dev: Device, m: Any) -> list[Row]:
    """Head training steps/s: frozen encoder recomputed every step vs features from a cache."""
    from sam_cffnet.losses import BCEDiceLoss

    torch.manual_seed(0)
    variant = args.train_variant
    bf16 = dev.cuda  # emulated (slow) on most CPUs
    model = m.SAMCFFNet(variant=variant, input_size=args.size, attention='sdpa', autocast='bf16' if bf16 else 'none',
                        decoder_channels=args.decoder_channels).to(dev.device)  # fmt: skip
    model.train()
    tile = args.train_tile
    image = torch.rand(args.train_batch, 3, tile, tile, device=dev.device)
    mask = (torch.rand(args.train_batch, tile, tile, device=dev.device) > 0.7).long()
    loss_fn = BCEDiceLoss()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.01)
    with torch.inference_mode():
        cached = [f.to('cpu', torch.float16) for f in model.encoder(image).features]
    if dev.cuda:
        cached = [f.pin_memory() for f in cached]

    def step(from_cache: bool) -> None:
        feats = [f.to(dev.device, non_blocking=True) for f in cached] if from_cache else None
        with dev.autocast(bf16):
            logits = model(image, feats)
            loss = loss_fn(logits.float(), mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    rows = []
    for from_cache in (False, True):
        opts = model.encoder.speed_options
        m.configure(model.encoder, 'reference', opts.autocast, opts.channels_last)
        flops = count_flops(lambda fc=from_cache: step(fc))  # plain matmul attention: every FLOP is counted
        m.configure(model.encoder, opts.attention, opts.autocast, opts.channels_last)
        dev.reset_peak()
        seconds = dev.time(lambda fc=from_cache: step(fc), args.warmup, args.iters)
        name = f'{variant} head, {"feature cache" if from_cache else "full encoder"}'
        precision = 'bf16' if bf16 else 'fp32'
        rows.append(Row('train', name, args.train_batch, precision, 'sdpa', False, 'steps', 1 / seconds, flops,
                        dev.peak_mib(), f'tiles {tile} px -> {args.size}'))  # fmt: skip
        print(f'  {name:<38} {rows[-1].per_second:9.2f} steps/s', file=sys.stderr, flush=True)
    return rows


def map_rows(args: argparse.Namespace, dev: Device, m: Any) -> list[Row]:
    """``map`` windows/s over a synthetic scene (skipped without rasterio / Lightning)."""
    missing = [p for p in ('rasterio', 'lightning') if not _importable(p)]
    if missing:
        return [Row('map', f'map (skipped: {", ".join(missing)} not installed)', 0, '-', '-', False, 'windows',
                    float('nan'), None, None)]  # fmt: skip
    import numpy as np
    import rasterio
    from affine import Affine

    from sam_cffnet.inference import MapParams, map_scenes
    from sam_cffnet.preprocessing import Preprocessing

    torch.manual_seed(0)
    model = m.SAMCFFNet(variant=args.map_variant, input_size=args.size, attention='sdpa',
                        decoder_channels=args.decoder_channels).eval()  # fmt: skip
    pre = Preprocessing.reference(tile_size=args.map_tile)
    with tempfile.TemporaryDirectory() as tmp:
        scene = Path(tmp) / 'scene.tif'
        n = args.map_scene
        profile = {'driver': 'GTiff', 'height': n, 'width': n, 'count': 3, 'dtype': 'uint8', 'tiled': True,
                   'crs': 'EPSG:32648', 'transform': Affine(10, 0, 500_000, 0, -10, 3_000_000)}  # fmt: skip
        rng = np.random.default_rng(0)
        with rasterio.open(scene, 'w', **profile) as dst:
            dst.write(np.tile(rng.integers(1, 256, (3, 256, 256), dtype=np.uint8), (1, -(-n // 256), -(-n // 256)))
                      [:, :n, :n])  # fmt: skip
        params = MapParams(inputs=[scene], output=Path(tmp) / 'map.tif', tile_size=args.map_tile,
                           overlap=args.map_tile // 4, batch_size=args.map_batch, num_workers=args.map_workers,
                           progress=False, block_size=args.map_block)  # fmt: skip
        trainer = {'accelerator': 'gpu' if dev.cuda else 'cpu', 'devices': 1,
                   'precision': 'bf16-mixed' if dev.cuda else '32-true'}  # fmt: skip
        dev.reset_peak()
        summary = map_scenes(model, params, pre, trainer=trainer)[0]
        peak = dev.peak_mib()
    window = torch.rand(1, 3, args.map_tile, args.map_tile, device=dev.device)
    model.to(dev.device)
    flops = reference_flops(m, model.encoder, lambda: model(window))
    wps = summary['windows'] / summary['seconds']
    print(f'  map {n} px scene {wps:9.2f} windows/s', file=sys.stderr, flush=True)
    return [Row('map', f'map {args.map_variant}, {n}x{n} px scene', args.map_batch, trainer['precision'], 'sdpa',
                False, 'windows', wps, flops, peak,
                f'{summary["windows"]} windows of {args.map_tile} px; model only '
                f'{summary["windows_per_second"]:.1f}/s')]  # fmt: skip


# ---------------------------------------------------------------------------------------------- table
def print_table(rows: list[Row], peak_tflops: float, header: str) -> None:
    """The table (Markdown)."""
    print(f'\n{header}\n')
    cols = ('row', 'batch', 'precision', 'attention', 'compile', 'items/s', 'ms/item', 'TFLOP/s', '% of limit',
            'peak MiB', 'note')  # fmt: skip
    print('| ' + ' | '.join(cols) + ' |')
    print('|' + '|'.join('---' for _ in cols) + '|')
    for r in rows:
        ok = r.per_second == r.per_second and r.per_second > 0
        tflops = r.flops_per_item * r.per_second / 1e12 if ok and r.flops_per_item else None
        cells = [
            f'{r.group}: {r.name}', str(r.batch) if r.batch else '-', r.precision, r.attention,
            'yes' if r.compiled else 'no', f'{r.per_second:.2f} {r.unit}/s' if ok else '-',
            f'{1000 / r.per_second:.1f}' if ok else '-', f'{tflops:.3g}' if tflops is not None else '-',
            f'{100 * tflops / peak_tflops:.3g} %' if tflops is not None else '-',
            f'{r.peak_mib:,.0f}' if r.peak_mib is not None else '-', r.note,
        ]  # fmt: skip
        print('| ' + ' | '.join(cells) + ' |')
    print(f'\nlimit: {peak_tflops:g} TFLOP/s; FLOPs per item counted with torch.utils.flop_counter (2 x multiply-adds);'
          ' % of limit = achieved TFLOP/s / limit')  # fmt: skip


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--tiny', action='store_true', help='CPU smoke mode: vit_tiny, 64 px, 1 iteration per row')
    p.add_argument('--device', default=None, help='cuda (default when available) or cpu')
    p.add_argument('--variants', nargs='+', default=['vit_b', 'vit_l', 'vit_h'])
    p.add_argument(
        '--compile-variants',
        nargs='*',
        default=None,
        help='variants with a torch.compile row (default: vit_l; none with --tiny)',
    )
    p.add_argument('--no-compile', action='store_true')
    p.add_argument('--size', type=int, default=1024, help='encoder input size')
    p.add_argument('--batch', type=int, default=8, help='encoder batch')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--iters', type=int, default=10)
    p.add_argument('--decoder-channels', type=int, default=256, help='CFFD width of the train and map rows')
    p.add_argument('--train-variant', default='vit_l')
    p.add_argument('--train-batch', type=int, default=8)
    p.add_argument('--train-tile', type=int, default=256)
    p.add_argument('--map-variant', default='vit_l')
    p.add_argument('--map-scene', type=int, default=4096, help='edge of the synthetic scene (px)')
    p.add_argument('--map-tile', type=int, default=256)
    p.add_argument('--map-batch', type=int, default=16)
    p.add_argument('--map-block', type=int, default=3072)
    p.add_argument('--map-workers', type=int, default=4)
    p.add_argument('--no-map', action='store_true')
    p.add_argument('--no-train', action='store_true')
    p.add_argument('--peak-tflops', type=float, default=790.0, help='physical limit (H200 dense bf16: ~790)')
    p.add_argument('--csv', help='also write the rows as CSV')
    args = p.parse_args(argv)
    if args.tiny:
        args.variants = ['vit_tiny']
        args.size, args.batch, args.warmup, args.iters = 64, 2, 1, 1
        args.train_variant, args.train_batch, args.train_tile = 'vit_tiny', 2, 64
        args.map_variant, args.map_scene, args.map_tile, args.map_batch, args.map_workers = 'vit_tiny', 160, 64, 4, 0
        args.map_block, args.decoder_channels = 96, 64
    if args.compile_variants is None:
        args.compile_variants = [] if args.tiny else ['vit_l']
    dev = Device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if dev.cuda:
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)) if args.tiny else torch.get_num_threads())
    warnings.filterwarnings('ignore', message='.*RANDOM weights.*')
    m = _import_models()
    name = torch.cuda.get_device_name(dev.device) if dev.cuda else f'CPU ({os.cpu_count()} cores)'
    t0 = time.perf_counter()
    rows = encoder_rows(args, dev, m)
    if not args.no_train:
        rows += train_rows(args, dev, m)
    if not args.no_map:
        rows += map_rows(args, dev, m)
    header = (f'{name}, torch {torch.__version__}, random weights, warm-up {args.warmup}, median of {args.iters}, '
              f'{time.perf_counter() - t0:.0f} s')  # fmt: skip
    print_table(rows, args.peak_tflops, header)
    if args.csv:
        import csv

        with open(args.csv, 'w', newline='') as fh:
            writer = csv.writer(fh)
            writer.writerow(list(Row.__dataclass_fields__))
            writer.writerows([[getattr(r, k) for k in Row.__dataclass_fields__] for r in rows])
    return rows


if __name__ == '__main__':
    main()
