"""Model efficiency report: total / trainable / frozen parameters and FLOPs per tile, as a table and as CSV.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` on the *meta* device (no memory, no compute:
instant even for SAM ViT-L), batch 1, in the unit the reference spec uses: GFLOPs = 1e9 x (2 x multiply-adds) of
the convolutions and matrix products (elementwise ops, norms and resizes are not counted). Divide by 2 for GMACs.
Parameters count shared tensors once (as ``model.parameters()`` does), so SAM-CFFNet's shared CFFD is 4,258,723.

Typical use::

    python -m sam_cffnet report --config configs/bijie.yaml --config configs/models/sam_psp.yaml --csv out.csv

    from sam_cffnet.report import model_report
    model_report(build_model('sam_cffnet'), tile_size=256)   # works on real or meta-device models

The command line parses the config with the training CLI's own parser (``sam_cffnet.cli``); this module only counts.
"""

from __future__ import annotations

import csv as csv_module
import io
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from .checkpoint import WEIGHT_FILE_ARGS
from .models.registry import build_model_from_config, model_table

__all__ = [
    'COLUMNS',
    'build_meta_model',
    'count_flops',
    'format_csv',
    'format_table',
    'model_report',
    'run_report',
]

#: Model arguments that only name weight files: ignored when counting (the counts do not depend on the weights).
WEIGHT_ARGS = tuple(WEIGHT_FILE_ARGS)

#: Report columns: key -> table header.
COLUMNS: dict[str, str] = {
    'model': 'model',
    'tile_size': 'tile',
    'params_total': 'params',
    'params_trainable': 'trainable',
    'params_frozen': 'frozen',
    'params_encoder': 'encoder params',
    'params_decoder': 'decoder params',
    'gflops': 'GFLOPs/tile',
    'gflops_encoder': 'encoder GFLOPs',
    'gflops_decoder': 'decoder GFLOPs',
}


def _encoder_module(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The shallowest submodule named ``encoder`` (``encoder`` or ``net.encoder``), with its qualified name."""
    best: tuple[str, nn.Module] | None = None
    for name, module in model.named_modules():
        if name.split('.')[-1] == 'encoder' and (best is None or name.count('.') < best[0].count('.')):
            best = (name, module)
    return best


def count_flops(model: nn.Module, tile_size: int = 256, in_channels: int = 3) -> dict[str, float]:
    """FLOPs of one forward pass on a 1 x in_channels x tile x tile input, counted on the meta device.

    The model may live on any device: its parameters and buffers are replaced by meta tensors for the count
    (``torch.func.functional_call``), so nothing is computed or allocated. The model is counted in eval mode.
    A model with more inputs than the image (``input_keys``, e.g. HPCL-Net's ``('image', 'dem')``) gets one
    1 x C x tile x tile tensor per input, C from its ``extra_input_channels()``.

    Returns:
        ``{'total': FLOPs, 'encoder': FLOPs of the submodule named encoder (0 if none)}``.
    """
    state = {
        **dict(model.named_parameters(remove_duplicate=False)),
        **dict(model.named_buffers(remove_duplicate=False)),
    }
    meta = {k: torch.empty_like(v, device='meta') for k, v in state.items()}
    channels = {**getattr(model, 'extra_input_channels', dict)(), 'image': in_channels}
    keys = getattr(model, 'input_keys', ('image',))
    inputs = tuple(torch.empty(1, channels[k], tile_size, tile_size, device='meta') for k in keys)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, depth=None)
    try:
        with counter, torch.no_grad():
            functional_call(model, meta, inputs, strict=False, tie_weights=True)
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    total = sum(counts.get('Global', {}).values())
    enc = _encoder_module(model)
    encoder = 0
    if enc is not None:
        key = f'{type(model).__name__}.{enc[0]}'
        encoder = sum(counts.get(key, {}).values())
    return {'total': float(total), 'encoder': float(encoder)}


def model_report(model: nn.Module, tile_size: int = 256, in_channels: int = 3, name: str | None = None) -> dict:
    """Parameters and FLOPs of a model for one tile.

    Args:
        model: any ``nn.Module`` taking B x in_channels x H x W (real or meta device).
        tile_size: tile side in pixels (SAM models resize it to their encoder input size inside, e.g. 1024).
        in_channels: bands of the tile.
        name: the model's name in the report (default: its class name).

    Returns:
        A dict with the :data:`COLUMNS` keys: ``params_*`` are exact counts (shared tensors once; encoder = the
        submodule named ``encoder``, decoder = everything else), ``gflops*`` are GFLOPs (1e9 x 2 x MACs) per tile,
        encoder vs the rest.
    """
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    enc = _encoder_module(model)
    enc_params = sum(p.numel() for p in enc[1].parameters()) if enc is not None else 0
    flops = count_flops(model, tile_size, in_channels)
    return {
        'model': name or type(model).__name__,
        'tile_size': tile_size,
        'params_total': total,
        'params_trainable': trainable,
        'params_frozen': total - trainable,
        'params_encoder': enc_params,
        'params_decoder': total - enc_params,
        'gflops': flops['total'] / 1e9,
        'gflops_encoder': flops['encoder'] / 1e9,
        'gflops_decoder': (flops['total'] - flops['encoder']) / 1e9,
    }


# ---------------------------------------------------------------------------------------------- models
def build_meta_model(config: Mapping[str, Any]) -> nn.Module:
    """Build a model from its config (``{'class_path', 'init_args'}``) for counting, without reading any weight file.

    The :data:`WEIGHT_ARGS`, e.g. ``sam_checkpoint``, are dropped.

    The model is built on the meta device (no memory, instant for ViT-L); a constructor that needs real values
    (smp's MiT computes its drop-path rates with ``.item()``) is built on the CPU instead, which is cheap for those
    models. :func:`count_flops` works on both.
    """
    args = {k: v for k, v in dict(config.get('init_args') or {}).items() if k not in WEIGHT_ARGS}
    lean = {'class_path': config['class_path'], 'init_args': args}
    try:
        with torch.device('meta'):
            return build_model_from_config(lean)
    except (RuntimeError, NotImplementedError):
        return build_model_from_config(lean)


# ---------------------------------------------------------------------------------------------- output
def _fmt(key: str, value: Any) -> str:
    if key.startswith('params'):
        return f'{value:,}'
    if key.startswith('gflops'):
        return f'{value:,.2f}'
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str] | None = None) -> str:
    """A plain-text table (right-aligned numbers) of report rows."""
    columns = dict(columns or COLUMNS)
    cells = [[_fmt(k, r[k]) for k in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(columns.values())]

    def line(values: Sequence[str]) -> str:
        return '  '.join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    out = [line(list(columns.values())), '  '.join('-' * w for w in widths)]
    out += [line(c) for c in cells]
    return '\n'.join(out)


def format_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV of report rows (exact parameter counts, GFLOPs with 4 decimals)."""
    buf = io.StringIO()
    writer = csv_module.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction='ignore', lineterminator='\n')
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f'{r[k]:.4f}' if k.startswith('gflops') else r[k]) for k in COLUMNS})
    return buf.getvalue()


def run_report(
    model_config: Mapping[str, Any],
    tile_size: int = 256,
    in_channels: int = 3,
    csv: str | os.PathLike[str] | None = None,
    out: IO[str] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Print the efficiency report of a model config: the CLI's ``report`` subcommand (which parses the config).

    Args:
        model_config: ``{'class_path', 'init_args'}`` of the model.
        tile_size: tile side.
        in_channels: bands of the tile.
        csv: also write the row as CSV to this file (``'-'``: print the CSV instead of the table).
        out: where to print (default stdout).
        name: the model's name in the report (default: its registered name).

    Returns:
        The report row (:func:`model_report`'s dict).
    """
    out = out or sys.stdout
    args = {**dict(model_config.get('init_args') or {}), 'in_channels': in_channels}
    model = build_meta_model({'class_path': model_config['class_path'], 'init_args': args})
    if name is None:
        name = next((n for n, path in model_table() if path.endswith('.' + type(model).__qualname__)), None)
    row = model_report(model, tile_size, in_channels, name=name)
    text = format_csv([row])
    if csv is not None and os.fspath(csv) == '-':
        print(text, end='', file=out)
        return row
    print(format_table([row]), file=out)
    if csv is not None:
        Path(csv).write_text(text)
    return row
