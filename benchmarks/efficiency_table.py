"""Paper-style efficiency table of SAM-CFFNet, its decoder ablations (Models I-IV) and the baselines.

For every model this builds the configuration shipped in ``configs/models/<model>.yaml`` on the meta device (no
weights are read, nothing is computed) and counts, for one tile (default 256 x 256 x 3, batch 1):

* parameters: total, trainable, frozen (shared tensors counted once);
* GFLOPs per tile (1e9 x 2 x MACs of convs and matmuls, torch's FlopCounterMode), split into encoder and the rest.
  SAM models resize the tile to 1024 px inside, so their encoder runs at 1024 px.

Run: ``python benchmarks/efficiency_table.py [--tile-size 256] [--csv table.csv]`` (a few seconds on a CPU).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sam_cffnet.cli import parse_config
from sam_cffnet.report import build_meta_model, format_csv, format_table, model_report

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'sam_cffnet' / 'configs' / 'models'

#: (config name, label in the table), in the paper's order.
MODELS = [
    ('attention_unet', 'Attention U-Net'),
    ('deeplabv3plus', 'DeepLabv3+ (ResNet-101)'),
    ('hrnet', 'HRNetV2-W48'),
    ('segformer', 'SegFormer (MiT-B2)'),
    ('sam_mask_decoder', 'Model I: SAM + mask decoder'),
    ('sam_psp', 'Model II: SAM + PSP'),
    ('sam_aspp', 'Model III: SAM + ASPP'),
    ('sam_lawin', 'Model IV: SAM + LawinASPP'),
    ('sam_cffnet', 'SAM-CFFNet (CFFD)'),
]

PAPER_COLUMNS = {
    'model': 'model',
    'params_total': 'params',
    'params_trainable': 'trainable',
    'params_frozen': 'frozen',
    'gflops': 'GFLOPs/tile',
    'gflops_encoder': 'encoder GFLOPs',
    'gflops_decoder': 'decoder GFLOPs',
}


def efficiency_rows(tile_size: int = 256, in_channels: int = 3) -> list[dict]:
    """One report row per model (see :func:`sam_cffnet.report.model_report`), labelled for the table."""
    rows = []
    for config, label in MODELS:
        model = parse_config(['--config', str(CONFIG_DIR / f'{config}.yaml')])['model']['model']
        model['init_args'] = {**model['init_args'], 'in_channels': in_channels}
        row = model_report(build_meta_model(model), tile_size, in_channels, name=label)
        row['params_trainable_mi'] = row['params_trainable'] / 2**20
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tile-size', type=int, default=256)
    parser.add_argument('--in-channels', type=int, default=3)
    parser.add_argument('--csv', help='also write the table as CSV to this file')
    args = parser.parse_args()
    start = time.perf_counter()
    rows = efficiency_rows(args.tile_size, args.in_channels)
    print(f'Efficiency per {args.tile_size} x {args.tile_size} x {args.in_channels} tile, batch 1 (GFLOPs = 2 x GMACs)')
    print(format_table(rows, PAPER_COLUMNS))
    print()
    print('Trainable parameters in Mi (2^20, the unit of the paper\'s "4.06 M"):')
    for r in rows:
        print(f'  {r["model"]:<30} {r["params_trainable_mi"]:8.2f}')
    print(f'\n({time.perf_counter() - start:.1f} s)')
    if args.csv:
        Path(args.csv).write_text(format_csv(rows))
        print(f'wrote {args.csv}')


if __name__ == '__main__':
    main()
