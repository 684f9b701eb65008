"""Command line: ``python -m sam_cffnet {fit,validate,test,predict} --config CONFIG`` (LightningCLI) and tools.

Training subcommands come from Lightning's own ``LightningCLI``: every Trainer flag works (``--trainer.precision
bf16-mixed``, ``--trainer.devices 4 --trainer.strategy ddp``, ``--trainer.num_nodes``, SLURM). ``CONFIG`` is a YAML
path, or the bare name of a recipe shipped with the package (``bijie.yaml`` or ``bijie``); list them with
``python -m sam_cffnet configs``. ``fit --ckpt_path last`` starts a run, or resumes it from its ``last.ckpt``
after an interruption: the same command does both.

Other subcommands (run ``python -m sam_cffnet <command> --help``) live in :data:`TOOLS`. This module holds wiring
only.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError as JSONArgparseError
from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from .arguments import PROG, argument_error_line, command_parser, parse_command, split_overrides
from .callbacks import BestCheckpoint, LastCheckpoint, PredictionWriter, existing_predictions
from .checkpoint import WEIGHT_FILE_ARGS
from .config_safety import check_config_callables
from .errors import ConfigError, MissingFileError, OutputExistsError, SAMCFFNetError
from .recipes import resolve_config
from .tasks.run_checkpoint import check_checkpoint_bands, check_run_checkpoint
from .tasks.segmentation import SegmentationTask

__all__ = ['TOOLS', 'SAMCFFNetCLI', 'instantiate_config', 'main', 'parse_config', 'run_lightning', 'run_tool']

DESCRIPTION = """SAM-based landslide segmentation (SAM-CFFNet, TransLandSeg, HPCL-Net, baselines).

Train/evaluate:  python -m sam_cffnet {fit,validate,test,predict} --config CONFIG [--key value ...]
                 CONFIG is a YAML file or the name of a shipped recipe (list them: python -m sam_cffnet configs).
                 fit --ckpt_path last: start, or resume after an interruption (the same command).
Tools:           python -m sam_cffnet {configs,models,export,report,extract-features,map,evaluate,reproduce} --help
"""

#: Where the model's options live in a parsed config (the task's ``model`` argument -> the model's ``init_args``).
MODEL_ARGS_KEY = 'model.model.init_args'


def _check_config_arg(name: str) -> str:
    path = resolve_config(name)
    if not Path(path).exists():
        raise MissingFileError(
            f'--config {name}: no such file and no shipped recipe of that name; list the recipes with '
            f'`python -m sam_cffnet configs`'
        )
    return path


def _resolve_config_args(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in ('--config', '-c') and i + 1 < len(out):
            out[i + 1] = _check_config_arg(out[i + 1])
        elif arg.startswith('--config='):
            out[i] = '--config=' + _check_config_arg(arg.split('=', 1)[1])
    return out


def _model_args(cfg: Any) -> dict[str, Any]:
    model = (cfg.get('model') or {}).get('model') or {}
    args = model.get('init_args') if hasattr(model, 'get') else None
    return dict(args or {})


def check_config_paths(cfg: Any) -> None:
    """Raise :class:`~sam_cffnet.errors.MissingFileError` naming the config key for a missing weight file or data root.

    Weight files are the SAM checkpoint, the authors' checkpoint and ImageNet weights. The check runs before anything is
    built.
    """
    model_args = _model_args(cfg)
    for key, expected in WEIGHT_FILE_ARGS.items():
        if key == 'sam_checkpoint' and model_args.get('reference_checkpoint'):
            continue  # both given: the model refuses the pair with its own message, before any work
        path = model_args.get(key)
        if path and not Path(path).exists():
            raise MissingFileError(f'{MODEL_ARGS_KEY}.{key}: {path} does not exist (expected {expected})')
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
            raise MissingFileError(f'data.init_args.root: {root} does not exist (expected the {name} dataset there)')


def _latest_version(save_dir: Path, name: str) -> int | None:
    folder = save_dir / name
    versions = [int(m.group(1)) for p in folder.glob('version_*') if (m := re.fullmatch(r'version_(\d+)', p.name))]
    return max(versions) if versions else None


def resolve_last_checkpoint(cfg: Any) -> str | None:
    """``fit --ckpt_path last``: the newest ``last.ckpt`` of this config's runs (end of the last completed epoch).

    The loggers of ``cfg`` are pinned to the version that holds it, so the resumed run writes its logs and
    checkpoints into the same folders. Returns ``None`` (a fresh start) when there is none. Lightning's mid-epoch
    SLURM ``hpc_ckpt_*.ckpt`` files are not used: resuming at an epoch boundary is exact (same weights as an
    uninterrupted run), and at most the current epoch is lost.
    """
    trainer = cfg.get('trainer') or {}
    root = Path(trainer.get('default_root_dir') or os.getcwd())
    loggers = trainer.get('logger')
    loggers = list(loggers) if isinstance(loggers, list) else ([loggers] if hasattr(loggers, 'get') else [])
    loggers = [lg for lg in loggers if hasattr(lg, 'get') and hasattr(lg.get('init_args'), 'get')]
    explicit = (cfg.get('checkpoint') or {}).get('dirpath') or (cfg.get('last_checkpoint') or {}).get('dirpath')
    candidates: list[tuple[float, Path, int | None]] = []
    if explicit:
        candidates += [(p.stat().st_mtime, p, None) for p in [Path(explicit) / 'last.ckpt'] if p.is_file()]
    elif loggers:
        args = loggers[0]['init_args']
        save_dir, name = Path(args.get('save_dir') or root), str(args.get('name') or 'lightning_logs')
        for path in (save_dir / name).glob('version_*/checkpoints/last.ckpt'):
            candidates.append((path.stat().st_mtime, path, int(path.parent.parent.name.split('_')[1])))
    else:
        candidates += [(p.stat().st_mtime, p, None) for p in [root / 'checkpoints' / 'last.ckpt'] if p.is_file()]
    if not candidates:
        return None
    _, path, version = max(candidates, key=lambda c: c[0])
    if version is not None:
        for i, logger in enumerate(loggers):
            init = logger['init_args']
            save_dir, name = Path(init.get('save_dir') or root), str(init.get('name') or 'lightning_logs')
            own = version if i == 0 else _latest_version(save_dir, name)
            if own is not None:
                init['version'] = own
    return str(path)


def _drop_logger_tip(record: logging.LogRecord) -> bool:
    """A logging filter: ``False`` for Lightning's "Tip: ... litlogger" line."""
    return 'litlogger' not in str(record.msg)


class SAMCFFNetCLI(LightningCLI):
    """LightningCLI with the package's defaults.

    * ``data.num_channels`` is linked to the model's ``in_channels``;
    * a ``BestCheckpoint`` (``--checkpoint.*``) keeps the best epoch by validation landslide IoU, and a
      :class:`~sam_cffnet.callbacks.LastCheckpoint` writes ``last.ckpt`` at the end of every epoch;
    * a :class:`~sam_cffnet.callbacks.PredictionWriter` (``--prediction_writer.*``) writes what ``predict``
      predicts as PNGs;
    * the seed defaults to the reference's 100.
    """

    def init_parser(self, **kwargs: Any) -> Any:
        """Parsers that raise on a mistake (one line from :func:`main`, not 90 lines of usage)."""
        return super().init_parser(**{**kwargs, 'exit_on_error': False})

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Parse, then check what the config would run before anything is built.

        Callables from known packages only, checkpoints loaded with ``weights_only=True`` only, ``ckpt_path`` a readable
        checkpoint of a run (``last`` resolved to it).
        """
        try:
            self.config = parser.parse_object(args) if isinstance(args, dict | Namespace) else parser.parse_args(args)
        except JSONArgparseError as err:
            command = args[0] if isinstance(args, list) and args and not str(args[0]).startswith('-') else 'fit'
            raise ConfigError(argument_error_line(err, parser, f'{PROG} {command}')) from None
        self._run_checkpoint: dict[str, Any] | None = None
        subcommand = self.config.get('subcommand')
        if not subcommand:
            return
        cfg = self.config[subcommand]
        check_config_callables(cfg)
        if cfg.get('weights_only') is False:
            raise ConfigError(
                '--weights_only false is refused: this package loads checkpoints with weights_only=True only (a '
                'checkpoint that needs more holds code that would run on loading)'
            )
        cfg['weights_only'] = True
        ckpt_path = cfg.get('ckpt_path')
        if ckpt_path == 'last':
            self._run_checkpoint = self._resolve_last(cfg, subcommand)
        elif ckpt_path and '://' not in str(ckpt_path):
            self._run_checkpoint = check_run_checkpoint(ckpt_path, subcommand)

    def _resolve_last(self, cfg: Any, subcommand: str) -> dict[str, Any] | None:
        """``--ckpt_path last`` -> the run's ``last.ckpt`` (``None`` for a fresh ``fit``), checked like any path.

        Returns:
            What :func:`check_run_checkpoint` found in it, or ``None`` when there is none yet.
        """
        found = resolve_last_checkpoint(cfg)
        if found is None and subcommand != 'fit':
            raise MissingFileError(
                f"{subcommand} --ckpt_path last: no last.ckpt of this config's runs was found; give the checkpoint's "
                f'path'
            )
        cfg['ckpt_path'] = found
        if found is None:
            rank_zero_info('ckpt_path=last: no checkpoint yet, starting afresh')
            return None
        saved = check_run_checkpoint(found, subcommand)  # before saying "resuming"
        if subcommand == 'fit':  # the run folder holds config.yaml: keep it, write this one beside it
            count = len(list(Path(found).parent.parent.glob('config*.yaml')))
            self.save_config_kwargs = {**self.save_config_kwargs, 'config_filename': f'config.resume{count}.yaml'}
            rank_zero_info(f'resuming from {found}')
        return saved

    def before_instantiate_classes(self) -> None:
        """Fail fast, before anything is built, on paths that do not exist and outputs that would be replaced."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        check_config_paths(cfg)
        if self.subcommand == 'predict':
            writer = cfg.get('prediction_writer') or {}
            out = (
                writer.get('output_dir')
                or Path((cfg.get('trainer') or {}).get('default_root_dir') or '.') / 'predictions'
            )
            if not writer.get('overwrite') and existing_predictions(out):
                raise OutputExistsError(
                    f'{out} already holds predictions; choose another --prediction_writer.output_dir or pass '
                    f'--prediction_writer.overwrite true'
                )

    def after_instantiate_classes(self) -> None:
        """Refuse a checkpoint trained on another number of bands than the data delivers (before any data is read)."""
        saved = self._run_checkpoint
        if saved is not None and self.datamodule is not None:
            check_checkpoint_bands(
                saved, getattr(self.datamodule, 'num_channels', None), self._get(self.config, 'ckpt_path')
            )
        super().after_instantiate_classes()

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """Lightning's Trainer, without its advertisement for a cloud logger on every run."""
        rank_zero = logging.getLogger('lightning.pytorch.utilities.rank_zero')
        rank_zero.addFilter(_drop_logger_tip)
        try:
            return super().instantiate_trainer(**kwargs)
        finally:
            rank_zero.removeFilter(_drop_logger_tip)

    def add_arguments_to_parser(self, parser: Any) -> None:
        """Link ``data.num_channels`` to the model's ``in_channels``; add the checkpoint and prediction writers."""
        parser.link_arguments('data.num_channels', f'{MODEL_ARGS_KEY}.in_channels', apply_on='instantiate')
        parser.add_lightning_class_args(BestCheckpoint, 'checkpoint')
        parser.add_lightning_class_args(LastCheckpoint, 'last_checkpoint')
        parser.add_lightning_class_args(PredictionWriter, 'prediction_writer')
        parser.set_defaults(
            {
                'checkpoint.monitor': SegmentationTask.monitor,
                'checkpoint.mode': SegmentationTask.mode,
                'checkpoint.save_last': False,
                'checkpoint.filename': 'best-epoch{epoch:03d}-iou{val_landslide_iou:.4f}',
                'checkpoint.auto_insert_metric_name': False,
            }
        )


def _cli(argv: list[str] | None, run: bool, from_command_line: bool = False) -> SAMCFFNetCLI:
    return SAMCFFNetCLI(
        SegmentationTask,
        LightningDataModule,
        subclass_mode_model=False,
        subclass_mode_data=True,
        seed_everything_default=100,
        args=None if from_command_line else argv,
        run=run,
        parser_kwargs={'prog': PROG, 'description': DESCRIPTION, 'allow_abbrev': False},
        save_config_kwargs={'overwrite': False},
    )


def run_lightning(argv: list[str], from_command_line: bool = False) -> SAMCFFNetCLI:
    """Run a LightningCLI subcommand (config names resolved to shipped recipes)."""
    argv = _resolve_config_args(argv)
    if from_command_line:  # LightningCLI reads sys.argv itself: hand it the resolved arguments there
        sys.argv = [sys.argv[0], *argv]
    return _cli(argv, run=True, from_command_line=from_command_line)


class _ParseOnly(SAMCFFNetCLI):
    """Parses configs like the training CLI (the data block optional), without building anything."""

    def before_instantiate_classes(self) -> None:
        pass  # nothing is read: files named in the config need not exist

    def instantiate_classes(self) -> None:
        pass


def parse_config(argv: list[str]) -> Any:
    """Parse ``--config`` files and overrides exactly as ``fit`` does (merging, defaults, types), building nothing.

    Returns:
        The parsed config as a plain dict (``model``, ``data``, ``trainer``, ...).
    """
    cli = _ParseOnly(
        SegmentationTask,
        None,
        subclass_mode_model=False,
        subclass_mode_data=True,
        seed_everything_default=False,
        args=_resolve_config_args(argv),
        run=False,
        parser_kwargs={'prog': PROG, 'description': DESCRIPTION, 'allow_abbrev': False},
    )
    return cli.config.as_dict()


def datamodule_from_config(config: dict[str, Any]) -> Any:
    """Build the datamodule of a parsed config (datamodules read no file before ``setup``), or ``None``."""
    data = config.get('data') or {}
    if not data.get('class_path'):
        return None
    module, _, name = data['class_path'].rpartition('.')
    return getattr(importlib.import_module(module), name)(**(data.get('init_args') or {}))


# ---------------------------------------------------------------------------------------------- tools
def _cmd_models(argv: list[str]) -> int:
    parse_command(command_parser('models', 'List the registered models.'), argv)
    from .models import model_table

    print('registered name     class_path (use it in a config: model.model.class_path)')
    for name, path in model_table():
        print(f'{name:<19} {path}')
    return 0


def _cmd_export(argv: list[str]) -> int:
    parser = command_parser('export', 'Write a self-contained checkpoint (frozen SAM weights included) for sharing.')
    parser.add_argument('checkpoint', type=str, help='a training checkpoint (.ckpt)')
    parser.add_argument('output', type=str, help='the file to write')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing output file')
    args = parse_command(parser, argv)
    from .tasks.segmentation import export_checkpoint

    if Path(args.output).exists() and not args.overwrite:  # before loading anything
        raise OutputExistsError(f'{args.output} exists; pass --overwrite to replace it')
    out = export_checkpoint(args.checkpoint, args.output, overwrite=args.overwrite)
    print(f'wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)')
    return 0


def _cmd_report(argv: list[str]) -> int:
    parser = command_parser(
        'report',
        'Total / trainable / frozen parameters and FLOPs per tile of the model of a config (counted on the meta '
        'device: instant even for ViT-L). Further --key value options are config overrides.',
    )
    parser.add_argument('--config', type=str, action='append', required=True,
                        help='config file or shipped recipe (repeatable)')  # fmt: skip
    parser.add_argument('--csv', type=str | None, default=None,
                        help="also write the row as CSV to this file ('-': print CSV, no table)")  # fmt: skip
    parser.add_argument('--tile-size', type=int | None, default=None,
                        help="tile side (default: the config's data tile_size, else 256)")  # fmt: skip
    own, overrides = split_overrides(parser, argv)
    args = parse_command(parser, own)
    from .report import run_report

    config = parse_config([arg for c in args.config for arg in ('--config', c)] + overrides)
    model = config['model']['model']
    datamodule = datamodule_from_config(config)
    tile = args.tile_size or (datamodule.preprocessing.tile_size if datamodule is not None else 256)
    bands = datamodule.num_channels if datamodule is not None else int(model['init_args'].get('in_channels', 3))
    run_report(model, tile, bands, args.csv)
    return 0


def instantiate_config(argv: list[str]) -> tuple[Any, Any]:
    """The task and datamodule of ``--config`` files and overrides, built by the training CLI itself (not run)."""
    cli = _cli(_resolve_config_args([*argv, '--trainer.logger', 'false']), run=False)
    return cli.model, cli.datamodule


def _cmd_extract_features(argv: list[str]) -> int:
    from .features.extract import extract_config_splits, extract_images, parse_args

    args, overrides = parse_args(argv)
    if args.images is not None:
        return extract_images(args)
    task, datamodule = instantiate_config(['--config', args.config, *overrides])
    return extract_config_splits(args, task.model, datamodule)


def _cmd_reproduce(argv: list[str]) -> int:
    """``reproduce``, its fits and tests run in this process through :func:`main` (so DDP launches re-run it)."""
    from .reproduce import main as reproduce

    return reproduce(argv, run_cli=main, check_cli=parse_config)


def _cmd_configs(argv: list[str]) -> int:
    from .recipes import configs_command

    return configs_command(argv)


def _cmd_map(argv: list[str]) -> int:
    from .inference.cli import main as map_main

    return map_main(argv)


def _cmd_evaluate(argv: list[str]) -> int:
    from .evaluation.cli import main as evaluate_main

    return evaluate_main(argv)


ToolCommand = Callable[[list[str]], int]

#: Extra subcommands: name -> (one-line help, the function taking the remaining argv and returning an exit code).
#: Each imports its modules when its command runs (a typo in ``fit`` does not import the mapping code).
TOOLS: dict[str, tuple[str, ToolCommand]] = {
    'configs': ('list the shipped recipes', _cmd_configs),
    'models': ('list the registered models', _cmd_models),
    'export': ('write a self-contained checkpoint for sharing', _cmd_export),
    'report': ("parameters and FLOPs per tile of a config's model (table or CSV)", _cmd_report),
    'extract-features': (
        'compute frozen SAM features once (cache for head training, or embeddings)',
        _cmd_extract_features,
    ),
    'map': (
        'map landslides over whole scenes or regions (GeoTIFF/VRT/PNG; multi-GPU/SLURM, resumable) -> COGs + polygons',
        _cmd_map,
    ),
    'reproduce': ("train and test the paper's recipes, authors' protocol -> table", _cmd_reproduce),
    'evaluate': (
        'score maps against a reference inventory (pixels, objects, areas) -> tables, GeoPackage, PNG',
        _cmd_evaluate,
    ),
}


def run_tool(name: str, argv: list[str]) -> int:
    """Run the extra subcommand ``name`` with its arguments."""
    return TOOLS[name][1](argv)


def main(args: list[str] | None = None) -> Any:
    """Entry point of ``python -m sam_cffnet`` and the ``sam-cffnet`` script.

    Args:
        args: the arguments; ``None`` reads the command line.

    Returns:
        With ``args`` given: what the subcommand returns (the :class:`SAMCFFNetCLI` of a training subcommand, a
        tool's exit code); errors propagate as exceptions. From the command line: the exit status: 0 on success,
        2 for bad input (a :class:`~sam_cffnet.errors.SAMCFFNetError`, printed as ``sam_cffnet: error: <message>``
        without a traceback unless ``SAM_CFFNET_TRACEBACK=1`` is set), 143 when stopped by SIGTERM (rerun the same
        command with ``--ckpt_path last`` to resume). Any other exception is a bug: its traceback is shown (exit 1).
    """
    if args is not None:
        return _dispatch(list(args), from_command_line=False)
    try:
        result = _dispatch(sys.argv[1:], from_command_line=True)
    except BaseException as err:
        user_error = _user_error(err)
        if user_error is not None and not os.environ.get('SAM_CFFNET_TRACEBACK'):
            print(f'sam_cffnet: error: {user_error}', file=sys.stderr)
            print('(set SAM_CFFNET_TRACEBACK=1 to see the traceback)', file=sys.stderr)
            return 2
        if type(err).__name__ == 'SIGTERMException':  # lightning.pytorch.utilities.exceptions.SIGTERMException
            print('sam_cffnet: stopped by SIGTERM; rerun the same command with --ckpt_path last to resume from the '
                  'last completed epoch', file=sys.stderr)  # fmt: skip
            return 143
        raise
    return result if isinstance(result, int) else 0


def _user_error(err: BaseException) -> SAMCFFNetError | None:
    """The :class:`SAMCFFNetError` behind ``err``: itself, or the cause of a wrapper.

    jsonargparse reports an error raised while a config class is built as a plain ``ValueError`` whose ``__cause__`` is
    the original.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, SAMCFFNetError):
            return current
        seen.add(id(current))
        current = current.__cause__
    return None


def _dispatch(argv: list[str], from_command_line: bool) -> Any:
    if argv[:1] in (['--version'], ['-V']):
        from . import __version__

        print(f'sam_cffnet {__version__}')
        return 0
    if argv and argv[0] in TOOLS:
        return run_tool(argv[0], argv[1:])
    if not argv or argv[0] in ('-h', '--help'):
        print(DESCRIPTION)
        print('Tools:')
        for name, (text, _) in TOOLS.items():
            print(f'  {name:<18} {text}')
        print()
    if argv and argv[0] not in ('fit', 'validate', 'test', 'predict', '-h', '--help'):
        raise ConfigError(
            f'unknown command {argv[0]!r}; commands: fit, validate, test, predict, {", ".join(TOOLS)} '
            f'(python -m sam_cffnet --help)'
        )
    return run_lightning(argv, from_command_line=from_command_line)
