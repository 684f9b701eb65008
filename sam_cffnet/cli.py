"""Command line: ``python -m sam_cffnet {fit,validate,test,predict} --config CONFIG`` (LightningCLI) and tools.

Training subcommands come from Lightning's own ``LightningCLI``: every Trainer flag works (``--trainer.precision
bf16-mixed``, ``--trainer.devices 4 --trainer.strategy ddp``, ``--trainer.num_nodes``, SLURM). ``CONFIG`` is a YAML
path, or the bare name of a recipe shipped with the package (``bijie.yaml`` or ``bijie``); list them with
``python -m sam_cffnet configs``.

Other subcommands (run ``python -m sam_cffnet <command> --help``) live in :data:`TOOLS`.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from .callbacks import PredictionWriter
from .checkpoint import WEIGHT_FILE_ARGS
from .tasks.segmentation import SegmentationTask, clean_model_args

__all__ = ['TOOLS', 'SAMCFFNetCLI', 'main', 'resolve_config', 'run_tool', 'shipped_configs', 'user_errors']

DESCRIPTION = """SAM-based landslide segmentation (SAM-CFFNet, TransLandSeg, HPCL-Net, baselines).

Train/evaluate:  python -m sam_cffnet {fit,validate,test,predict} --config CONFIG [--key value ...]
                 CONFIG is a YAML file or the name of a shipped recipe (list them: python -m sam_cffnet configs).
Tools:           python -m sam_cffnet {configs,models,export,report,extract-features,map} --help
"""


def shipped_config_dir() -> Path:
    """The folder of recipes shipped inside the package (the repository's ``configs/`` links to it)."""
    return Path(str(resources.files('sam_cffnet') / 'configs'))


def shipped_configs() -> list[str]:
    """Names of the shipped recipes, relative to :func:`shipped_config_dir`."""
    root = shipped_config_dir()
    return sorted(str(p.relative_to(root)) for p in root.rglob('*.yaml'))


def resolve_config(name: str) -> str:
    """A config path: ``name`` itself if it exists, else the shipped recipe of that name (with or without
    ``.yaml`` / a leading ``configs/``), else ``name`` unchanged (jsonargparse then reports it missing)."""
    if Path(name).exists():
        return name
    root = shipped_config_dir()
    stem = name[len('configs/') :] if name.startswith('configs/') else name
    for candidate in (stem, f'{stem}.yaml'):
        path = root / candidate
        if path.is_file():
            return str(path)
    return name


def _resolve_config_args(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in ('--config', '-c') and i + 1 < len(out):
            out[i + 1] = resolve_config(out[i + 1])
        elif arg.startswith('--config='):
            out[i] = '--config=' + resolve_config(arg.split('=', 1)[1])
    return out


def check_config_paths(cfg: Any) -> None:
    """Raise :class:`FileNotFoundError` naming the config key for a missing weight file (SAM checkpoint, the
    authors' checkpoint, ImageNet weights) or data root."""
    import importlib

    model_args = clean_model_args(((cfg.get('model', {}) or {}).get('init_args', {}) or {}).get('model_args'))
    for key, expected in WEIGHT_FILE_ARGS.items():
        if key == 'sam_checkpoint' and model_args.get('reference_checkpoint'):
            continue  # both given: the model refuses the pair with its own message, before any work
        path = model_args.get(key)
        if path and not Path(path).exists():
            raise FileNotFoundError(
                f'model.init_args.model_args.{key}: {path} does not exist (expected {expected}: see '
                f'checkpoints/README.md)'
            )
    data = cfg.get('data', {}) or {}
    class_path = data.get('class_path') or ''
    root = (data.get('init_args') or {}).get('root')
    if root and class_path and not Path(root).exists():
        module, _, name = class_path.rpartition('.')
        try:
            creates_root = getattr(getattr(importlib.import_module(module), name), 'creates_root', False)
        except (ImportError, AttributeError):
            creates_root = False
        if not creates_root:
            raise FileNotFoundError(f'data.init_args.root: {root} does not exist (expected the {name} dataset there)')


class SAMCFFNetCLI(LightningCLI):
    """LightningCLI with the package's defaults.

    * ``data.num_channels`` is linked to ``model.init_args.in_channels`` (a band-count mismatch is an error);
    * a ``ModelCheckpoint`` (``--checkpoint.*``) keeps the best epoch by validation landslide IoU and the last one;
    * a :class:`PredictionWriter` (``--prediction_writer.*``) writes what ``predict`` predicts as PNGs;
    * the seed defaults to the reference's 100.
    """

    def before_instantiate_classes(self) -> None:
        """Fail fast, before any model is built or data is read, on paths the config names but that do not exist."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        check_config_paths(cfg)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments('data.num_channels', 'model.init_args.in_channels', apply_on='instantiate')
        parser.add_lightning_class_args(ModelCheckpoint, 'checkpoint')
        parser.add_lightning_class_args(PredictionWriter, 'prediction_writer')
        parser.set_defaults(
            {
                'checkpoint.monitor': SegmentationTask.monitor,
                'checkpoint.mode': SegmentationTask.mode,
                'checkpoint.save_last': True,
                'checkpoint.filename': 'best-epoch{epoch:03d}-iou{val_landslide_iou:.4f}',
                'checkpoint.auto_insert_metric_name': False,
            }
        )


def run_lightning(argv: list[str], from_command_line: bool = False) -> SAMCFFNetCLI:
    """Run a LightningCLI subcommand (config names resolved to shipped recipes)."""
    argv = _resolve_config_args(argv)
    if from_command_line:  # LightningCLI reads sys.argv itself: hand it the resolved arguments there
        sys.argv = [sys.argv[0], *argv]
    return SAMCFFNetCLI(
        SegmentationTask,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=100,
        args=None if from_command_line else argv,
        parser_kwargs={'description': DESCRIPTION},
        save_config_kwargs={'overwrite': False},
    )


# ---------------------------------------------------------------------------------------------- tools
def _cmd_configs(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog='python -m sam_cffnet configs', description='List the shipped recipes.')
    parser.parse_args(argv)
    print(f'Recipes shipped in {shipped_config_dir()} (use the name with --config):')
    for name in shipped_configs():
        print(f'  {name}')
    return 0


def _cmd_models(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog='python -m sam_cffnet models', description='List the registered models.')
    parser.parse_args(argv)
    from .models import list_models

    for name in list_models():
        print(name)
    return 0


def _cmd_export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m sam_cffnet export',
        description='Write a self-contained checkpoint (frozen SAM weights included) for sharing.',
    )
    parser.add_argument('checkpoint', help='a training checkpoint (.ckpt)')
    parser.add_argument('output', help='the file to write')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing output file')
    args = parser.parse_args(argv)
    from .tasks.segmentation import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.output, overwrite=args.overwrite)
    print(f'wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)')
    return 0


def _cmd_report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m sam_cffnet report',
        description='Total / trainable / frozen parameters and FLOPs per tile of the model of a config '
        '(counted on the meta device: instant even for ViT-L).',
    )
    parser.add_argument('--config', action='append', required=True, help='config file or shipped recipe (repeatable)')
    parser.add_argument('--csv', help="also write the row as CSV to this file ('-': print CSV instead of the table)")
    parser.add_argument('--tile-size', type=int, help="tile side (default: the config's data tile_size, else 256)")
    parser.add_argument('--in-channels', type=int, help='input bands (default: from the config, else 3)')
    args = parser.parse_args(argv)
    from .report import run_report

    run_report([resolve_config(c) for c in args.config], args.csv, args.tile_size, args.in_channels)
    return 0


#: Extra subcommands: name -> (one-line help, ``'module:function'`` taking the remaining argv, returning an exit
#: code). Modules are imported only when their command runs.
TOOLS: dict[str, tuple[str, str]] = {
    'configs': ('list the shipped recipes', 'sam_cffnet.cli:_cmd_configs'),
    'models': ('list the registered models', 'sam_cffnet.cli:_cmd_models'),
    'export': ('write a self-contained checkpoint for sharing', 'sam_cffnet.cli:_cmd_export'),
    'report': ("parameters and FLOPs per tile of a config's model (table or CSV)", 'sam_cffnet.cli:_cmd_report'),
    'extract-features': (
        'compute frozen SAM features once (cache for head training, or embeddings)',
        'sam_cffnet.features.extract:main',
    ),
    'map': (
        'map landslides over a whole scene (GeoTIFF/PNG) -> georeferenced COG + polygons',
        'sam_cffnet.inference.cli:main',
    ),
}


def run_tool(name: str, argv: list[str]) -> int:
    """Run the extra subcommand ``name`` with its arguments."""
    import importlib

    module, _, function = TOOLS[name][1].partition(':')
    return getattr(importlib.import_module(module), function)(argv)


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that report bad input: a missing, malformed or existing file or folder (``OSError``, the
    datasets' ``DatasetNotFoundError`` and ``DatasetLayoutError``, ``CheckpointError``, ``InputRasterError``), a
    stale or truncated feature cache (``CacheError``) or a value that does not fit (``ValueError``).

    Their messages name the path or the value and what was expected; on the command line they are shown as that
    message alone (see :func:`main`).
    """
    from .features.cache import CacheError

    return (OSError, ValueError, CacheError)


def main(args: list[str] | None = None) -> Any:
    """Entry point of ``python -m sam_cffnet`` and the ``sam-cffnet`` script.

    Args:
        args: the arguments; ``None`` reads the command line.

    Returns:
        With ``args`` given: what the subcommand returns (the :class:`SAMCFFNetCLI` of a training subcommand, a
        tool's exit code); errors propagate as exceptions. From the command line: the exit status, 0 on success and
        2 for bad input (:func:`user_errors`), which is printed as ``sam_cffnet: error: <message>`` without a
        traceback unless ``SAM_CFFNET_TRACEBACK=1`` is set.
    """
    if args is not None:
        return _dispatch(list(args), from_command_line=False)
    try:
        result = _dispatch(sys.argv[1:], from_command_line=True)
    except Exception as err:
        if os.environ.get('SAM_CFFNET_TRACEBACK') or not isinstance(err, user_errors()):
            raise
        print(f'sam_cffnet: error: {err}', file=sys.stderr)
        print('(set SAM_CFFNET_TRACEBACK=1 to see the traceback)', file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


def _dispatch(argv: list[str], from_command_line: bool) -> Any:
    if argv and argv[0] in TOOLS:
        return run_tool(argv[0], argv[1:])
    if not argv or argv[0] in ('-h', '--help'):
        print(DESCRIPTION)
        print('Tools:')
        for name, (text, _) in TOOLS.items():
            print(f'  {name:<18} {text}')
        print()
    return run_lightning(argv, from_command_line=from_command_line)
