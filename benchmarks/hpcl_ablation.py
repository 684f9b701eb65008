"""HPCL-Net ablation: trainable parameters and training-step cost of no DEM / DEM fusion / DEM fusion + HPCL.

The three shipped model files ``configs/hpcl_ablation/{no_dem,dem_fusion,dem_fusion_hpcl}.yaml`` are built with
their own model options (random weights; the encoder size and input size can be reduced for a quick run) and
trained side by side on the same synthetic batch (image B x 3 x T x T, DEM B x 1 x T x T, a blob mask): the full
training step (frozen encoder, fusion, decoder, hyper-pixels, EMA update, queue loss and enqueue, backward, AdamW),
steps interleaved across the three models so all see the same machine load. Printed: trainable parameters
(and the momentum copy), median seconds per step, and the ratio to the no-DEM model.

    .venv/bin/python benchmarks/hpcl_ablation.py                            # vit_b, 256 px tile -> 256 px encoder
    .venv/bin/python benchmarks/hpcl_ablation.py --encoder vit_l --input-size 1024 --steps 2   # reference sizes
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from sam_cffnet.cli import parse_config
from sam_cffnet.models import build_model_from_config
from sam_cffnet.models.base import count_parameters
from sam_cffnet.tasks.segmentation import SegmentationTask

ABLATION = {
    'no DEM (SAM-CFFNet)': 'hpcl_ablation/no_dem.yaml',
    'DEM fusion (gated)': 'hpcl_ablation/dem_fusion.yaml',
    'DEM fusion + HPCL': 'hpcl_ablation/dem_fusion_hpcl.yaml',
}


def synthetic_batch(batch_size: int, tile: int) -> dict[str, torch.Tensor]:
    """Image, DEM and a mask with one landslide blob per tile (both classes present, boundaries for HPCL)."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(tile), torch.arange(tile), indexing='ij')
    masks = []
    for _ in range(batch_size):
        cy, cx = torch.randint(tile // 4, 3 * tile // 4, (2,), generator=g).tolist()
        masks.append((((yy - cy) ** 2 + (xx - cx) ** 2) < (tile // 5) ** 2).long())
    return {
        'image': torch.rand(batch_size, 3, tile, tile, generator=g),
        'dem': torch.randn(batch_size, 1, tile, tile, generator=g),
        'mask': torch.stack(masks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--encoder', default='vit_b', help='vit_b (default), vit_l (reference), vit_h')
    parser.add_argument('--input-size', type=int, default=256, help='encoder input side (reference 1024)')
    parser.add_argument('--tile', type=int, default=256, help='tile side (reference 256)')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--steps', type=int, default=3, help='timed steps per model (after one warm-up step)')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: leave the default)')
    args = parser.parse_args()
    warnings.filterwarnings('ignore')
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = synthetic_batch(args.batch_size, args.tile)
    tasks: dict[str, SegmentationTask] = {}
    optimizers: dict[str, torch.optim.Optimizer] = {}
    for name, config in ABLATION.items():
        model = parse_config(['--config', 'hpcl_bijie.yaml', '--config', config])['model']['model']
        overrides = {'variant': args.encoder, 'input_size': args.input_size, 'sam_checkpoint': None}
        task = SegmentationTask(build_model_from_config(model, **overrides), num_figure_tiles=0).train()
        tasks[name] = task
        optimizers[name] = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=2e-4)

    def step(name: str) -> float:
        task, optimizer = tasks[name], optimizers[name]
        start = time.perf_counter()
        logits, aux = task.model.training_outputs(batch)
        loss = task.loss_fn(logits, batch['mask']) + sum(aux.values(), torch.zeros(()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in ABLATION}
    for name in ABLATION:
        step(name)  # warm-up (first-call allocations)
    for _ in range(args.steps):
        for name in ABLATION:
            times[name].append(step(name))

    print(
        f'HPCL-Net ablation: {args.encoder} at {args.input_size} px, tile {args.tile}, batch {args.batch_size}, '
        f'{torch.get_num_threads()} threads, median of {args.steps} steps'
    )
    print('| model | trainable | momentum copy (not trained) | s / training step | ratio to no DEM |')
    print('|---|---|---|---|---|')
    base = statistics.median(times['no DEM (SAM-CFFNet)'])
    for name, task in tasks.items():
        trainable = count_parameters(task.model)['trainable']
        momentum = getattr(task.model, 'momentum', None)
        frozen_copy = count_parameters(momentum)['total'] if momentum is not None else 0
        median = statistics.median(times[name])
        print(f'| {name} | {trainable:,} | {frozen_copy:,} | {median:.3f} | {median / base:.2f} |')


if __name__ == '__main__':
    main()
