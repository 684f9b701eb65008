"""Model efficiency report: total / trainable / frozen parameters and FLOPs per tile, as a table and as CSV.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` on the *meta* device (no memory, no compute:
instant even for SAM ViT-L), batch 1, in the unit the reference spec uses: GFLOPs = 1e9 x (2 x multiply-adds) of
the convolutions and matrix products (elementwise ops, norms and resizes are not counted). Divide by 2 for GMACs.
Parameters count shared tensors once (as ``model.parameters()`` does), so SAM-CFFNet's shared CFFD is 4,258,723.

Typical use::

    python -m sam_cffnet report --config configs/bijie.yaml --config configs/models/sam_psp.yaml --csv out.csv

    from sam_cffnet.report import model_report
    model_report(build_model('sam_cffnet'), tile_size=256)   # works on real or meta-device models
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
import yaml
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from .checkpoint import WEIGHT_FILE_ARGS
from .models.registry import build_model

__all__ = [
    'COLUMNS',
    'build_meta_model',
    'count_flops',
    'format_csv',
    'format_table',
    'load_model_block',
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


# ---------------------------------------------------------------------------------------------- configs
def _merge(base: dict, update: Mapping) -> dict:
    """Merge YAML dicts like ``--config a --config b``: nested dicts merge, but ``model_args`` is replaced whole
    (it is a plain dict argument, which jsonargparse replaces)."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) and k != 'model_args':
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def _resolve(path: str | os.PathLike[str]) -> Path:
    if Path(path).exists():
        return Path(path)
    from .cli import resolve_config  # shipped recipes by name (bijie, models/sam_psp.yaml, ...)

    return Path(resolve_config(os.fspath(path)))


def load_model_block(
    config: str | os.PathLike[str] | Mapping[str, Any] | Sequence[str | os.PathLike[str] | Mapping[str, Any]],
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The model name, its arguments and the data arguments of a config.

    Args:
        config: a LightningCLI YAML file (path or shipped recipe name), several of them merged in order (as
            ``--config a --config b``), or an already loaded mapping: the whole config, its ``model:`` block, or the
            task arguments ``{'model': 'sam_psp', 'model_args': {...}}``.

    Returns:
        ``(model name, model_args, data init_args)``; a task-level ``in_channels`` is folded into ``model_args``.
    """
    items = [config] if isinstance(config, str | os.PathLike | Mapping) else list(config)
    merged: dict[str, Any] = {}
    for item in items:
        if isinstance(item, Mapping):
            data = dict(item)
        else:
            with open(_resolve(item)) as f:
                data = yaml.safe_load(f) or {}
        merged = _merge(merged, data)
    block: Any = merged
    if isinstance(block.get('model'), Mapping):  # whole config -> model block
        block = block['model']
    if 'init_args' in block:  # class_path/init_args form
        block = block['init_args']
    if not isinstance(block.get('model'), str):
        raise ValueError('no model found in the config: expected model: {class_path: ..., init_args: {model: NAME}}')
    args = dict(block.get('model_args') or {})
    if block.get('in_channels') is not None:
        args.setdefault('in_channels', block['in_channels'])
    data = merged.get('data') or {}
    data_args = dict(data.get('init_args', data) if isinstance(data, Mapping) else {})
    return block['model'], args, data_args


def build_meta_model(name: str, model_args: Mapping[str, Any] | None = None) -> nn.Module:
    """Build a registered model for counting, without reading any weight file (the :data:`WEIGHT_ARGS`, e.g.
    ``sam_checkpoint``, are dropped).

    The model is built on the meta device (no memory, instant for ViT-L); a constructor that needs real values
    (smp's MiT computes its drop-path rates with ``.item()``) is built on the CPU instead, which is cheap for those
    models. :func:`count_flops` works on both.
    """
    args = {k: v for k, v in (model_args or {}).items() if k not in WEIGHT_ARGS}
    try:
        with _meta_device():
            return build_model(name, **args)
    except (RuntimeError, NotImplementedError):
        return build_model(name, **args)


def _meta_device() -> Any:
    """``torch.device('meta')`` as a context, except that ``torch.linspace`` stays on the CPU: constructors such as
    timm's / smp's MiT turn a linspace into Python floats (drop-path rates) with ``.item()``."""
    try:
        from torch.utils._device import DeviceContext
    except ImportError:  # pragma: no cover - private API moved
        return torch.device('meta')

    class _Meta(DeviceContext):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if func is torch.linspace:
                return func(*args, **(kwargs or {}))
            return super().__torch_function__(func, types, args, kwargs)

    return _Meta(torch.device('meta'))


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
    config: str | os.PathLike[str] | Mapping[str, Any] | Sequence[str | os.PathLike[str] | Mapping[str, Any]],
    csv: str | os.PathLike[str] | None = None,
    tile_size: int | None = None,
    in_channels: int | None = None,
    out: IO[str] | None = None,
) -> dict[str, Any]:
    """Print the efficiency report of the model of a config: the CLI's ``report`` subcommand.

    Args:
        config: see :func:`load_model_block` (a path, a shipped recipe name, a list of them merged like repeated
            ``--config``, or a mapping holding the model block).
        csv: also write the row as CSV to this file (``'-'``: print the CSV instead of the table).
        tile_size: tile side; default the data block's ``tile_size`` (or ``patch_size``), else 256.
        in_channels: bands; default ``model_args.in_channels`` (or the task's ``in_channels``), else 3.
        out: where to print (default stdout).

    Returns:
        The report row (:func:`model_report`'s dict; ``model`` is the registered name).
    """
    out = out or sys.stdout
    name, args, data_args = load_model_block(config)
    tile = int(tile_size or data_args.get('tile_size') or data_args.get('patch_size') or 256)
    bands = int(in_channels or args.get('in_channels') or 3)
    if bands != 3 or 'in_channels' in args:
        args['in_channels'] = bands
    row = model_report(build_meta_model(name, args), tile, bands, name=name)
    text = format_csv([row])
    if csv is not None and os.fspath(csv) == '-':
        print(text, end='', file=out)
        return row
    print(format_table([row]), file=out)
    if csv is not None:
        Path(csv).write_text(text)
    return row
