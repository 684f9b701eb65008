"""Encoder forward: reference-equivalent fp32 path vs. the optimized paths, side by side in one run.

For ViT-B and ViT-L (random weights; relative position tables randomized so the bias matters) at 256 and 1024 px
input, batch 1, inference (no autograd state), the script times each encoder configuration on the same input,
interleaved, and prints: median seconds, speed-up over the reference, peak extra resident memory of the forward
(Linux VmHWM reset via /proc/self/clear_refs), and the maximum absolute difference of the four feature levels from
the reference fp32 features (absolute, and relative to the largest feature magnitude).

    .venv/bin/python benchmarks/encoder_speed.py            # all rows, the big ones last (~5-10 min on 2 cores)
    .venv/bin/python benchmarks/encoder_speed.py --quick    # 256 px rows only
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _memory import reset_peak, status_bytes

from sam_cffnet.models.encoders.attention import configure_encoder_speed
from sam_cffnet.models.encoders.sam import SAMEncoder

CONFIGS = {
    'reference fp32': ('reference', 'none', False),
    'sdpa fp32': ('sdpa', 'none', False),
    'reference bf16': ('reference', 'bf16', False),
    'sdpa bf16 + channels_last': ('sdpa', 'bf16', True),
}


def measure(encoder: SAMEncoder, x: torch.Tensor, reps: int) -> tuple[list[float], list[torch.Tensor], int]:
    """Timings, features and peak extra memory of ``reps`` forwards (after one warm-up for small inputs)."""
    times = []
    base = reset_peak()
    with torch.inference_mode():
        for _ in range(reps):
            t = time.perf_counter()
            feats = encoder(x).features
            times.append(time.perf_counter() - t)
    peak = status_bytes('VmHWM') - base
    return times, [f.float().clone() for f in feats], peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='256 px rows only')
    parser.add_argument('--small', nargs='*', default=['vit_b', 'vit_l'], help='encoders of the 256 px rows')
    parser.add_argument('--big', nargs='*', default=['vit_b', 'vit_l'], help='encoders of the 1024 px rows')
    parser.add_argument('--big-configs', nargs='*', default=list(CONFIGS), help='configurations of the 1024 px rows')
    parser.add_argument('--reps', type=int, default=2, help='repetitions of the 256 px rows (1024 px: 1)')
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads (default 1: on a shared, oversubscribed CPU more threads are slower)',
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = [(v, 256) for v in args.small] + ([] if args.quick else [(v, 1024) for v in args.big])
    bf16 = 'avx512_bf16' in Path('/proc/cpuinfo').read_text() if Path('/proc/cpuinfo').exists() else False
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, CPU avx512_bf16={bf16}, batch 1, inference')
    header = f'{"encoder":<7} {"input":>5}  {"configuration":<27} {"s/forward":>9} {"speed-up":>8} {"peak MiB":>9} ' \
             f'{"max|diff|":>10} {"rel diff":>9}'  # fmt: skip
    print(header)
    print('-' * len(header))
    for variant, size in rows:
        enc = SAMEncoder(variant, input_size=size)
        with torch.no_grad():
            for name, p in enc.vit.named_parameters():
                if 'rel_pos' in name:
                    p.normal_(0, 0.1)
        x = torch.rand(1, 3, size, size)
        reps = args.reps if size <= 256 else 1
        if size <= 256:  # warm-up (oneDNN primitive creation) for every configuration
            for attention, autocast, channels_last in CONFIGS.values():
                configure_encoder_speed(enc, attention, autocast, channels_last)
                measure(enc, x, 1)
        results = {}
        configs = CONFIGS if size <= 256 else {k: CONFIGS[k] for k in ['reference fp32', *args.big_configs]}
        for name, (attention, autocast, channels_last) in configs.items():
            configure_encoder_speed(enc, attention, autocast, channels_last)
            results[name] = measure(enc, x, reps)
        ref_t = statistics.median(results['reference fp32'][0])
        ref_f = results['reference fp32'][1]
        scale = max(f.abs().max().item() for f in ref_f)
        for name, (times, feats, peak) in results.items():
            t = statistics.median(times)
            diff = max((a - b).abs().max().item() for a, b in zip(feats, ref_f, strict=True))
            print(f'{variant:<7} {size:>5}  {name:<27} {t:>9.3f} {ref_t / t:>7.2f}x {peak / 2**20:>9.0f} '
                  f'{diff:>10.2e} {diff / scale:>9.2e}', flush=True)  # fmt: skip
        del enc, results


if __name__ == '__main__':
    main()
