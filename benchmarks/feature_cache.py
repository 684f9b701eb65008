"""Head training from the feature cache vs. recomputing the frozen encoder, same tiles, side by side in one run.

SAM-CFFNet (CFFD head, reference width 256) on a synthetic Bijie-layout dataset, the same training loop (AdamW,
BCE+Dice) fed by the plain datamodule (encoder forward every step) or by :class:`CachedFeatureDataModule`
(features read from the float16 memmap cache). Epochs are interleaved (plain, cached, plain, cached, ...) so both
see the same machine load. Printed: extraction time (the cached path's first-epoch overhead), per-epoch times,
their ratio, the expected ratio from the measured encoder-forward and head-step costs, peak extra memory, and the
first-step losses of both paths.

    .venv/bin/python benchmarks/feature_cache.py                  # vit_b, 64 px tiles resized to 128, CFFD width 64
    .venv/bin/python benchmarks/feature_cache.py --encoder vit_l --input-size 1024 --tiles 8   # reference sizes
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from typing import Any

import torch
from _memory import reset_peak, status_bytes

from sam_cffnet.datamodules import DemoBijieDataModule
from sam_cffnet.features import CachedFeatureDataModule
from sam_cffnet.models import build_model
from sam_cffnet.tasks.segmentation import SegmentationTask


def run_epoch(task: SegmentationTask, dm: Any, optimizer: torch.optim.Optimizer) -> tuple[float, float, int]:
    """One training epoch; returns (seconds, first-step loss, peak extra RSS bytes)."""
    task.train()
    base = reset_peak()
    first = float('nan')
    start = time.perf_counter()
    for i, batch in enumerate(dm.train_dataloader()):
        batch = dm.on_after_batch_transfer(batch, 0)
        logits, _ = task.model.training_outputs(batch)
        loss = task.loss_fn(logits, batch['mask'])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i == 0:
            first = loss.item()
    return time.perf_counter() - start, first, status_bytes('VmHWM') - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--encoder', default='vit_b')
    parser.add_argument('--input-size', type=int, default=128, help='encoder input size (0 = tile size)')
    parser.add_argument('--tile-size', type=int, default=64)
    parser.add_argument('--tiles', type=int, default=6, help='training tiles (landslide chips)')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--epochs', type=int, default=2, help='timed epochs per path (after the first)')
    parser.add_argument('--decoder-channels', type=int, default=64)
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads (default 1: on a shared, oversubscribed CPU more threads are slower)',
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warnings.filterwarnings('ignore')
    with tempfile.TemporaryDirectory() as tmp:
        n_ls = max(2, round(args.tiles / 0.8 * 2 / 3))
        n_nls = max(1, round(args.tiles / 0.8 / 3))
        dm_args = {'root': f'{tmp}/bijie', 'tile_size': args.tile_size, 'batch_size': args.batch_size,
                   'split_ratios': (0.8, 0.2, 0.0), 'num_landslide': n_ls, 'num_non_landslide': n_nls}  # fmt: skip
        model = build_model('sam_cffnet', variant=args.encoder, input_size=args.input_size or None,
                            decoder_channels=args.decoder_channels)  # fmt: skip
        task = SegmentationTask(model)
        plain = DemoBijieDataModule(**dm_args)
        plain.prepare_data()
        plain.setup('fit')
        cached = CachedFeatureDataModule(DemoBijieDataModule(**dm_args), f'{tmp}/cache', encoder=task.model.encoder)
        t = time.perf_counter()
        cached.setup('fit')
        extraction = time.perf_counter() - t
        n = len(plain.train_dataset)
        state = {k: v.clone() for k, v in task.model.decoder.state_dict().items()}

        def fresh_optimizer() -> torch.optim.Optimizer:
            task.model.decoder.load_state_dict(state)
            return torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-4)

        # the per-batch costs that set the expected ratio
        batch = plain.on_after_batch_transfer(next(iter(plain.train_dataloader())), 0)
        with torch.inference_mode():
            task.model.encoder(batch['image'])
            t = time.perf_counter()
            out = task.model.encoder(batch['image'])
            t_enc = time.perf_counter() - t
        feats = [f.clone() for f in out.features]
        task.model.decoder(feats, out.image.clone()).sum().backward()
        t = time.perf_counter()
        task.model.decoder(feats, out.image.clone()).sum().backward()
        t_head = time.perf_counter() - t
        task.zero_grad()

        results: dict[str, list[tuple[float, float, int]]] = {'recompute encoder': [], 'from cache': []}
        for _ in range(args.epochs):
            for name, dm in (('recompute encoder', plain), ('from cache', cached)):
                results[name].append(run_epoch(task, dm, fresh_optimizer()))
        disk = sum(p.stat().st_size for c in cached.caches.values() for p in c.path.iterdir())
    print(f'{args.encoder}, tiles {args.tile_size} px -> encoder input {args.input_size or args.tile_size} px, '
          f'{n} training tiles, batch {args.batch_size}, CFFD width {args.decoder_channels}, '
          f'{torch.get_num_threads()} threads')  # fmt: skip
    print(f'extraction (train + val, once): {extraction:.1f} s; cache on disk {disk / 2**20:.1f} MiB')
    print(f'per batch: encoder forward {t_enc:.3f} s, head forward+backward {t_head:.3f} s '
          f'-> expected epoch ratio ~ (enc + head) / head = {(t_enc + t_head) / t_head:.1f}x')  # fmt: skip
    header = f'{"path":<18} {"epoch s (median)":>16} {"epochs s":>20} {"ratio":>7} {"peak MiB":>9} {"1st loss":>9}'
    print(header)
    print('-' * len(header))
    ref = statistics.median(r[0] for r in results['recompute encoder'])
    for name, rows in results.items():
        med = statistics.median(r[0] for r in rows)
        times = ', '.join(f'{r[0]:.1f}' for r in rows)
        print(f'{name:<18} {med:>16.2f} {times:>20} {ref / med:>6.2f}x {max(r[2] for r in rows) / 2**20:>9.0f} '
              f'{rows[0][1]:>9.5f}')  # fmt: skip
    break_even = extraction / max(ref - statistics.median(r[0] for r in results['from cache']), 1e-9)
    print(f'the extraction pays for itself after {break_even:.1f} epochs')


if __name__ == '__main__':
    main()
