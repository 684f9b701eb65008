"""``python -m sam_cffnet reproduce``: train and test the paper's recipes under the authors' protocol.

Given the data roots and the SAM checkpoint, every selected recipe of ``sam_cffnet/configs/reference/`` (the authors'
protocol to the letter, see docs/reference_protocol.md) is trained (``fit``), its best checkpoint evaluated on the
split the paper reports (``validate``: the authors selected and reported on one split) and, where the recipe has one,
on a distinct test split (``test``); a Markdown and a CSV table put the numbers beside the paper's.

Layout of ``--output`` (default ``runs/reproduce``)::

    reproduce.json                 marks the folder as a reproduce output (nothing else is ever written into a
                                   folder without it)
    reproduce.md, reproduce.csv    the table (rewritten from the results below at the end of every invocation)
    <run>/settings.json            recipe, data root and SAM checkpoint of the run (a rerun with others is refused)
    <run>/checkpoints/             last.ckpt (every epoch) and best-*.ckpt
    <run>/logs/                    TensorBoard and CSV logs of fit (one version per start or resume)
    <run>/{validate,test}/         CSV metrics of the evaluations of the best checkpoint
    <run>/result.json              the run's numbers; its presence means the run is done (it is skipped)

Resuming: rerunning the same command skips the finished runs and restarts an interrupted one with
``fit --ckpt_path last``, which continues from the last completed epoch of that run (``<run>/checkpoints/last.ckpt``).

How the training runs: this module sits below ``cli.py`` (layers) and does not import it. :func:`main` takes the
package's in-process CLI entry as ``run_cli`` (``sam_cffnet.cli.main``, a function taking the argument list); every
``fit``/``validate``/``test`` then runs in this process through the package's LightningCLI, so Lightning's DDP
launcher re-launches this very command (``python -m sam_cffnet reproduce ...``) for the other ranks, which replay the
same sequence of runs (the plan depends only on the arguments and on ``result.json`` files, which only rank 0 writes
after a run has finished on every rank). Without ``run_cli``, each command runs as a ``python -m sam_cffnet ...``
subprocess; that is equally DDP-safe (each subprocess is an ordinary CLI run whose own launcher re-launches it, and
under SLURM/torchrun the subprocess inherits the rank variables), at the price of one interpreter start per command.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import math
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only

from .arguments import command_parser, parse_command, split_overrides
from .checkpoint import load_checkpoint_file
from .errors import ConfigError, MissingFileError, OutputExistsError, SAMCFFNetError

__all__ = ['PAPER', 'RUNS', 'Run', 'main', 'write_table']

#: The paper's numbers (percent) by dataset. SAM-CFFNet (Xi et al., Remote Sensing 2024, 16(13), 2334): the abstract
#: gives the landslide-class IoU of the three datasets; the authors' demo.ipynb (GVLM, their val split, released
#: GVLM_best.pth.tar) prints P/R/F1 (macro means over background and landslide) and mIoU. The paper's tables were
#: not available (spec/reference_sam_cffnet.md section 8).
PAPER: dict[str, dict[str, float]] = {
    'bijie': {'landslide_iou': 77.13},
    'landslide4sense': {'landslide_iou': 55.26},
    'gvlm': {'landslide_iou': 73.87, 'miou': 83.65, 'macro_f1': 90.79, 'macro_precision': 90.31, 'macro_recall': 91.29},
}
PAPER_SOURCE = (
    "SAM-CFFNet paper abstract (landslide IoU: 77.13 Bijie, 55.26 Landslide4Sense, 73.87 GVLM) and the authors' "
    'demo.ipynb on GVLM (mIoU 83.65, macro F1 90.79, macro precision 90.31, macro recall 91.29); TransLandSeg '
    'publishes no absolute numbers that were available here'
)

#: Metric columns of the table: (logged name without the stage prefix, Markdown header, CSV column).
METRICS: tuple[tuple[str, str, str], ...] = (
    ('landslide_iou', 'landslide IoU', 'landslide_iou_pct'),
    ('miou', 'mIoU (2 classes)', 'miou_pct'),
    ('macro_f1', 'macro F1', 'macro_f1_pct'),
    ('landslide_f1', 'landslide F1', 'landslide_f1_pct'),
    ('macro_precision', 'macro precision', 'macro_precision_pct'),
    ('macro_recall', 'macro recall', 'macro_recall_pct'),
    ('overall_accuracy', 'overall accuracy', 'overall_accuracy_pct'),
)


@dataclass(frozen=True)
class Run:
    """One reproduction run: a reference recipe on one dataset.

    Attributes:
        name: run folder name (the recipe's name, with the dataset for the H5 recipe).
        model: the model's name in the table.
        dataset: ``'bijie'``, ``'landslide4sense'`` or ``'gvlm'`` (the paper's numbers).
        recipe: the shipped recipe (``reference/*.yaml``).
        root_option: the option of this command that gives its data root.
        distinct_test: the recipe has a test split other than val (then ``test`` is run too).
        split_note: what the val split is, for the table.
        translandseg: run only with ``--translandseg``.
    """

    name: str
    model: str
    dataset: str
    recipe: str
    root_option: str
    distinct_test: bool
    split_note: str
    translandseg: bool = False


RUNS: tuple[Run, ...] = (
    Run('sam_cffnet_bijie', 'SAM-CFFNet', 'bijie', 'reference/sam_cffnet_bijie.yaml', 'bijie', False,
        'landslide chips, random 30 % (seed 42); the selection split, as the paper'),
    Run('sam_cffnet_landslide4sense', 'SAM-CFFNet', 'landslide4sense', 'reference/sam_cffnet_landslide4sense.yaml',
        'landslide4sense', True, 'official ValidData (selection split); test = official TestData'),
    Run('sam_cffnet_gvlm', 'SAM-CFFNet', 'gvlm', 'reference/sam_cffnet_gvlm.yaml', 'gvlm', False,
        'random 26.4 % of the 256 px tiles; the selection split, as the paper'),
    Run('sam_cffnet_h5_bijie', 'SAM-CFFNet', 'bijie', 'reference/sam_cffnet_h5.yaml', 'h5_bijie', False,
        "the authors' val/ tiles (their selection and reported split)"),
    Run('sam_cffnet_h5_landslide4sense', 'SAM-CFFNet', 'landslide4sense', 'reference/sam_cffnet_h5.yaml',
        'h5_landslide4sense', False, "the authors' val/ tiles (their selection and reported split)"),
    Run('sam_cffnet_h5_gvlm', 'SAM-CFFNet', 'gvlm', 'reference/sam_cffnet_h5.yaml', 'h5_gvlm', False,
        "the authors' val/ tiles (their selection and reported split)"),
    Run('translandseg_bijie', 'TransLandSeg', 'bijie', 'reference/translandseg_bijie.yaml', 'bijie', False,
        'landslide chips, random 30 % (seed 42); the selection split, as the paper', translandseg=True),
    Run('translandseg_landslide4sense', 'TransLandSeg', 'landslide4sense',
        'reference/translandseg_landslide4sense.yaml', 'landslide4sense', True,
        'official ValidData (selection split); test = official TestData', translandseg=True),
)  # fmt: skip

#: Overrides this command sets itself (a user value would break the run layout or the resume).
RESERVED = (
    '--config', '--ckpt_path', '--trainer.default_root_dir', '--trainer.logger', '--checkpoint.dirpath',
    '--data.root', '--data.init_args.root', '--model.model.sam_checkpoint', '--model.model.init_args.sam_checkpoint',
)  # fmt: skip
#: Prefixes of the overrides passed on to every fit/validate/test command.
FORWARDED = ('--trainer.', '--data.', '--model.', '--seed_everything')

#: Settings of ``--dry-run``: a tiny random encoder at the tiles' own size, 64 px tiles, 1 epoch on the CPU.
DRY_RUN_OVERRIDES = (
    '--model.model.variant', 'vit_tiny', '--model.model.sam_checkpoint', 'null', '--model.model.input_size', 'null',
    '--data.init_args.tile_size', '64', '--data.init_args.batch_size', '2', '--data.init_args.num_workers', '0',
    '--trainer.max_epochs', '1', '--trainer.accelerator', 'cpu', '--trainer.devices', '1',
    '--trainer.log_every_n_steps', '1',
)  # fmt: skip

CLIRunner = Callable[[list[str]], Any]
CLIParser = Callable[[list[str]], Any]


def build_parser() -> Any:
    """The command's options (unknown ``--trainer.*``, ``--data.*``, ``--model.*`` options are forwarded)."""
    parser = command_parser(
        'reproduce',
        "Train and test SAM-CFFNet's three recipes (and optionally TransLandSeg's two) under the authors' protocol "
        "(sam_cffnet/configs/reference/) and write a Markdown + CSV table beside the paper's numbers. Rerun the same "
        'command to resume after an interruption. Trainer flags (--trainer.devices 4 --trainer.strategy ddp '
        '--trainer.precision bf16-mixed ...) and other --data.* / --model.* overrides are passed to every training '
        'and evaluation.',
    )
    parser.add_argument('--output', type=str, default='runs/reproduce', help='folder of the runs and tables')
    parser.add_argument('--sam-checkpoint', type=str | None, default=None,
                        help='official SAM ViT-L weights (sam_vit_l_0b3195.pth)')  # fmt: skip
    parser.add_argument('--bijie', type=str | None, default=None,
                        help='Bijie root as downloaded (landslide/, non-landslide/)')  # fmt: skip
    parser.add_argument('--landslide4sense', type=str | None, default=None,
                        help='Landslide4Sense root (TrainData/, ValidData/, TestData/)')  # fmt: skip
    parser.add_argument('--gvlm', type=str | None, default=None,
                        help='GVLM root (GVLM_Object_Extraction/<Site>/{im.png,ref.png})')  # fmt: skip
    for name, text in (('bijie', 'BJL'), ('landslide4sense', 'L4S'), ('gvlm', 'GVLM')):
        parser.add_argument(f'--h5-{name}', type=str | None, default=None,
                            help=f"the authors' preprocessed {text} H5 tiles (train/, val/)")  # fmt: skip
    parser.add_argument('--translandseg', action='store_true', help='also TransLandSeg on Bijie and Landslide4Sense')
    parser.add_argument('--only', nargs='+', default=None,
                        help=f'run only these ({", ".join(r.name for r in RUNS)})')  # fmt: skip
    parser.add_argument(
        '--dry-run', action='store_true',
        help='synthetic data in the Bijie, Landslide4Sense and GVLM layouts (written under OUTPUT/demo_data), a tiny '
        'random encoder, 64 px tiles, 1 epoch on the CPU: checks the whole pipeline in minutes; numbers meaningless',
    )  # fmt: skip
    return parser


def _check_overrides(overrides: list[str]) -> list[str]:
    for token in overrides:
        if not token.startswith('--'):
            continue
        option = token.split('=', 1)[0]
        if option in RESERVED:
            raise ConfigError(
                f'reproduce sets {option} itself (from --output, the data-root options and --sam-checkpoint); remove it'
            )
        if not option.startswith(FORWARDED):
            raise ConfigError(
                f'reproduce: unknown option {option}; its own options are listed by --help, and only --trainer.*, '
                f'--data.*, --model.* and --seed_everything are passed on to the training'
            )
    return overrides


def _selected_runs(args: Any) -> list[tuple[Run, str]]:
    """The runs to do, with their data roots (in :data:`RUNS` order)."""
    names = {r.name for r in RUNS}
    unknown = sorted(set(args.only or ()) - names)
    if unknown:
        raise ConfigError(f'--only: unknown runs {unknown}; choose among {sorted(names)}')
    selected = []
    for run in RUNS:
        root = getattr(args, run.root_option)
        if root is None or (run.translandseg and not args.translandseg) or (args.only and run.name not in args.only):
            continue
        selected.append((run, str(root)))
    if not selected:
        raise ConfigError(
            'reproduce: nothing to run; give at least one data root (--bijie, --landslide4sense, --gvlm, '
            '--h5-bijie, --h5-landslide4sense, --h5-gvlm) or --dry-run'
            + (f' (--only {" ".join(args.only)} selects none of the given datasets)' if args.only else '')
        )
    return selected


def _check_inputs(args: Any, runs: list[tuple[Run, str]]) -> None:
    """Missing files and folders are reported before any work, naming the option."""
    if not args.dry_run:
        if not args.sam_checkpoint:
            raise ConfigError(
                'reproduce: --sam-checkpoint is required (the official sam_vit_l_0b3195.pth), or --dry-run'
            )
        if not Path(args.sam_checkpoint).is_file():
            raise MissingFileError(
                f'--sam-checkpoint: {args.sam_checkpoint} does not exist (expected sam_vit_l_0b3195.pth)'
            )
    for run, root in runs:
        if not Path(root).is_dir():
            option = '--' + run.root_option.replace('_', '-')
            raise MissingFileError(f'{option}: {root} does not exist (expected the dataset folder for {run.recipe})')


def _is_rank_zero() -> bool:
    return int(getattr(rank_zero_only, 'rank', 0) or 0) == 0


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.partial')
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + '\n')
    os.replace(tmp, path)


MARKER = 'reproduce.json'


def _claim_output(out: Path) -> None:
    """Use ``out`` only if it is new, empty, or an earlier reproduce output (checked and marked by rank 0)."""
    if not _is_rank_zero():
        return
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f'--output: {out} is a file; give a folder')
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise OutputExistsError(
            f'--output: {out} exists and is not a reproduce output (no {MARKER}); give a new or empty folder'
        )
    if not (out / MARKER).is_file():
        _write_json(out / MARKER, {'tool': 'python -m sam_cffnet reproduce', 'layout': 1})


def _claim_run(run_dir: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume a run folder made with another recipe, data root, SAM checkpoint or dry-run setting."""
    path = run_dir / 'settings.json'
    if path.is_file():
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            changes = ', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())
            raise OutputExistsError(
                f'{run_dir} holds a run with other settings ({changes}); use another --output, or delete {run_dir} to '
                f'start that run afresh'
            )
    elif _is_rank_zero():
        _write_json(path, settings)


def _loggers(run_dir: Path) -> str:
    logs = str(run_dir / 'logs')
    loggers = [
        {'class_path': 'lightning.pytorch.loggers.TensorBoardLogger', 'init_args': {'save_dir': logs, 'name': 'tb'}},
        {'class_path': 'lightning.pytorch.loggers.CSVLogger', 'init_args': {'save_dir': logs, 'name': 'csv'}},
    ]
    return json.dumps(loggers)


def _eval_logger(run_dir: Path, stage: str) -> str:
    return json.dumps([{'class_path': 'lightning.pytorch.loggers.CSVLogger',
                        'init_args': {'save_dir': str(run_dir), 'name': stage}}])  # fmt: skip


def _newest_version(folder: Path) -> Path | None:
    versions = [p for p in folder.glob('version_*') if p.name.split('_', 1)[1].isdigit()]
    return max(versions, key=lambda p: int(p.name.split('_', 1)[1])) if versions else None


def read_metrics(folder: Path) -> dict[str, float]:
    """The metrics a CSVLogger wrote in the newest ``version_*`` of ``folder`` (later rows win; ``{}`` if none)."""
    version = _newest_version(folder)
    path = version / 'metrics.csv' if version is not None else None
    values: dict[str, float] = {}
    if path is None or not path.is_file():
        return values  # nothing was logged (an empty split)
    with path.open(newline='') as f:
        for row in csv.DictReader(f):
            values.update({k: float(v) for k, v in row.items() if v not in ('', None) and k not in ('epoch', 'step')})
    return values


def _model_checkpoint_state(state: dict[str, Any]) -> dict[str, Any]:
    for key, value in (state.get('callbacks') or {}).items():
        if str(key).startswith('ModelCheckpoint') and isinstance(value, dict):
            return {'key': str(key), **value}
    return {}


def _checkpoint_info(checkpoints: Path) -> tuple[Path, dict[str, Any]]:
    """The best checkpoint of a finished fit and facts about it.

    Each ``best-*.ckpt`` records the score it was saved for (``current_score`` of its ``ModelCheckpoint`` state);
    the best of them is taken (on a tie the earliest epoch, or the latest where the recipe says ``ties: later``).
    Several files exist when a resumed run did not get the best-model bookkeeping back; ``last.ckpt`` is used when
    there is none.
    """
    last = checkpoints / 'last.ckpt'
    state = load_checkpoint_file(last, expected='the last.ckpt of this run')
    scored = []
    for path in sorted(checkpoints.glob('best-*.ckpt')):
        saved = load_checkpoint_file(path, expected='a best checkpoint of this run')
        mc = _model_checkpoint_state(saved)
        score = mc.get('current_score')
        score = float(score) if score is not None else math.nan
        sign = -1.0 if "'mode': 'min'" in mc.get('key', '') else 1.0
        if not math.isnan(score):
            later = -1 if mc.get('ties') == 'later' else 1
            scored.append((-sign * score, later * int(saved.get('epoch', 0)), path, saved))
    if scored:
        _, _, best, best_state = min(scored, key=lambda item: item[:2])
    else:
        best, best_state = last, state
    info = {
        'epochs': int(state.get('epoch', -1)) + 1,
        'best_epoch': int(best_state.get('epoch', -1)) + 1,
        'global_step': int(state.get('global_step', 0)),
        'best_checkpoint': str(best),
    }
    return best, info


def _subprocess_cli(argv: list[str]) -> int:
    """Run ``python -m sam_cffnet ARGV``; a SIGTERM to this process is passed on (the child saves and exits)."""
    proc = subprocess.Popen([sys.executable, '-m', 'sam_cffnet', *argv])
    handler = None
    try:
        handler = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    except ValueError:  # not the main thread: no forwarding
        pass
    try:
        return proc.wait()
    finally:
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)


def _run(run_cli: CLIRunner | None, argv: list[str]) -> int:
    if run_cli is None:
        return _subprocess_cli(argv)
    with warnings.catch_warnings():
        # sys.argv keeps this command on purpose (Lightning's DDP launcher re-runs it for the other ranks)
        warnings.filterwarnings('ignore', message=".*LightningCLI's args parameter is intended to run from within")
        result = run_cli(argv)
    del result
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return 0


def _say(message: str) -> None:
    if _is_rank_zero():
        print(f'reproduce: {message}', flush=True)


def _dry_run_roots(out: Path) -> dict[str, str]:
    """Where ``--dry-run`` writes its synthetic data sets, by data-root option."""
    return {name: str(out / 'demo_data' / name) for name in ('bijie', 'landslide4sense', 'gvlm')}


def _write_dry_run_data(out: Path, names: set[str]) -> None:
    """Write the synthetic data sets ``names`` of ``--dry-run`` (rank 0; the other ranks of a DDP run start after)."""
    from .datasets.demo import make_demo_bijie, make_demo_gvlm, make_demo_landslide4sense

    if not _is_rank_zero():
        return
    roots = {name: Path(path) for name, path in _dry_run_roots(out).items()}
    if 'bijie' in names:
        make_demo_bijie(roots['bijie'], num_landslide=16, num_non_landslide=6, size_range=(64, 112))
    if 'landslide4sense' in names:
        make_demo_landslide4sense(roots['landslide4sense'], 16, 6, 6, size=32)
    if 'gvlm' in names:
        make_demo_gvlm(roots['gvlm'])


def _run_arguments(args: Any, run: Run, root: str, out: Path, overrides: list[str]) -> list[str]:
    """The options of one run's ``fit``/``validate``/``test`` (without ``--trainer.logger`` and ``--ckpt_path``)."""
    run_dir = out / run.name
    base = ['--config', run.recipe, '--data.init_args.root', str(Path(root).resolve())]
    if args.sam_checkpoint and not args.dry_run:
        base += ['--model.model.sam_checkpoint', str(Path(args.sam_checkpoint).resolve())]
    base += ['--trainer.default_root_dir', str(run_dir), '--checkpoint.dirpath', str(run_dir / 'checkpoints')]
    return [*base, *(DRY_RUN_OVERRIDES if args.dry_run else ()), *overrides]


def _parse_error(text: str) -> str:
    """The one line of a parser's error output that says what is wrong (``error: ...``), else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith('error:')]
    line = (errors or lines or ['the options were refused'])[-1]
    return line.removeprefix('error:').strip()


def _check_run_options(label: str, argv: list[str], check_cli: CLIParser | None) -> None:
    """Parse one run's options exactly as its ``fit`` will (nothing built, nothing read).

    A mistake (an option typo, a wrong value) is a :class:`~sam_cffnet.errors.ConfigError` naming the run, before any
    run starts.

    Args:
        label: the run, for the message.
        argv: the run's ``fit`` options (``--config`` ... overrides), without the subcommand.
        check_cli: the package's config parser (``sam_cffnet.cli.parse_config``); ``None``: ``python -m sam_cffnet
            fit ... --print_config`` in a subprocess.
    """
    if check_cli is None:
        proc = subprocess.run([sys.executable, '-m', 'sam_cffnet', 'fit', *argv, '--print_config'],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        if proc.returncode:
            raise ConfigError(f'{label}: {_parse_error(proc.stderr)} (nothing was run)')
        return
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            check_cli(argv)
    except SAMCFFNetError as err:
        raise type(err)(f'{label}: {err} (nothing was run)') from err
    except SystemExit as err:
        if err.code:
            raise ConfigError(f'{label}: {_parse_error(stderr.getvalue())} (nothing was run)') from None
        raise


def main(
    argv: Sequence[str] | None = None, run_cli: CLIRunner | None = None, check_cli: CLIParser | None = None
) -> int:
    """Entry point of ``python -m sam_cffnet reproduce``.

    Every option of every selected run (the recipe plus the forwarded overrides) is parsed first, as its ``fit``
    will parse it: a mistake is reported on one line before any data is written or any run starts.

    Args:
        argv: the arguments after ``reproduce`` (``None``: the command line).
        run_cli: the package's in-process CLI entry (``sam_cffnet.cli.main``), called with the argument list of
            each ``fit``/``validate``/``test``; ``None`` runs them as ``python -m sam_cffnet`` subprocesses.
        check_cli: the package's config parser (``sam_cffnet.cli.parse_config``), which parses the options of a
            ``fit`` without building anything; ``None`` checks them with ``python -m sam_cffnet fit ...
            --print_config`` subprocesses.

    Returns:
        0 when every run is done, else the exit status of the command that failed (143: stopped by SIGTERM; rerun
        the same command to resume).
    """
    parser = build_parser()
    own, overrides = split_overrides(parser, list(sys.argv[1:] if argv is None else argv))
    args = parse_command(parser, own)
    overrides = _check_overrides(overrides)
    out = Path(args.output).resolve()
    if args.dry_run:
        for option in ('bijie', 'landslide4sense', 'gvlm'):
            if getattr(args, option) is None:
                setattr(args, option, '<demo>')
    runs = _selected_runs(args)
    _check_inputs(args, [(run, root) for run, root in runs if root != '<demo>'])
    demo = _dry_run_roots(out)
    runs = [(run, demo[run.root_option] if root == '<demo>' else root) for run, root in runs]
    for run, root in runs:  # every option of every run, before any work
        options = [*_run_arguments(args, run, root, out, overrides), '--trainer.logger', _loggers(out / run.name)]
        _check_run_options(f'reproduce: run {run.name} ({run.recipe})', options, check_cli)
    _claim_output(out)
    if args.dry_run:
        _say('DRY RUN: synthetic data, a tiny SAM encoder with RANDOM weights, 64 px tiles, 1 epoch on the CPU')
        _write_dry_run_data(out, {run.root_option for run, root in runs if root == demo.get(run.root_option)})
    sam = str(Path(args.sam_checkpoint).resolve()) if args.sam_checkpoint and not args.dry_run else None
    for number, (run, root) in enumerate(runs, 1):
        run_dir = out / run.name
        label = f'[{number}/{len(runs)}] {run.name}'
        if (run_dir / 'result.json').is_file():
            _say(f'{label}: done before ({run_dir / "result.json"}), skipped')
            continue
        settings = {'recipe': run.recipe, 'root': str(Path(root).resolve()), 'sam_checkpoint': sam,
                    'dry_run': bool(args.dry_run)}  # fmt: skip
        _claim_run(run_dir, settings)
        base = _run_arguments(args, run, root, out, overrides)
        resume = (run_dir / 'checkpoints' / 'last.ckpt').is_file()
        _say(f'{label}: fit {run.recipe} on {root}' + (' (resuming from its last.ckpt)' if resume else ''))
        status = _run(run_cli, ['fit', *base, '--trainer.logger', _loggers(run_dir), '--ckpt_path', 'last'])
        if status:
            return _failed(label, 'fit', status)
        best, info = _checkpoint_info(run_dir / 'checkpoints')
        metrics: dict[str, dict[str, float]] = {}
        for stage, prefix in (('validate', 'val'), ('test', 'test')):
            if stage == 'test' and not run.distinct_test:
                continue
            _say(f'{label}: {stage} {best.name}')
            status = _run(run_cli, [stage, *base, '--trainer.logger', _eval_logger(run_dir, stage), '--ckpt_path',
                                    str(best)])  # fmt: skip
            if status:
                return _failed(label, stage, status)
            if _is_rank_zero():
                found = {k[len(prefix) + 1 :]: v for k, v in read_metrics(run_dir / stage).items()
                         if k.startswith(prefix + '_')}  # fmt: skip
                if found:
                    metrics[prefix] = found
                else:
                    _say(f'{label}: {stage} logged no metrics (an empty split?); left out of the table')
        if _is_rank_zero():
            _write_json(run_dir / 'result.json', {'run': run.name, 'model': run.model, 'dataset': run.dataset,
                                                  'recipe': run.recipe, 'dry_run': bool(args.dry_run), **info,
                                                  'metrics': metrics})  # fmt: skip
    if _is_rank_zero():
        given = list(sys.argv[1:] if argv is None else argv)
        md, table_csv = write_table(out, command=['python -m sam_cffnet reproduce', *given])
        print(md.read_text(), flush=True)
        _say(f'wrote {md} and {table_csv}')
    return 0


def _failed(label: str, stage: str, status: int) -> int:
    _say(
        f'{label}: {stage} failed (exit status {status}); finished runs are kept: fix the cause and rerun the same '
        f'command (an interrupted fit resumes from its last.ckpt)'
    )
    return status


def _pct(value: float | None) -> str:
    return '–' if value is None or (isinstance(value, float) and math.isnan(value)) else f'{value:.2f}'


def _csv_value(value: Any) -> Any:
    """Empty for a missing or undefined (NaN: 0 / 0) value, floats rounded to 4 decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ''
    return round(value, 4) if isinstance(value, float) else value


def authors_nan(values: dict[str, float]) -> list[str]:
    """The macro metrics that the authors' code prints as NaN for a split with these (logged) metrics.

    Their macro precision, recall and F1 are ``(x_0 + x_1) / 2`` (SAM-CFFNet ``utils/tools.py:31-44``; TransLandSeg
    prints the per-class lists, ``Evaluator.py``), so one undefined class value (0 / 0) makes the mean NaN, where
    ours is the mean over the classes where it is defined. A class value is 0 / 0 when the class is never predicted
    (precision), never present (recall), or has no true positive at all (F1 = 2PR / (P + R) with P = R = 0). Which
    of these happened is read from the metrics a validate/test logs (``landslide_precision``, ``landslide_recall``,
    ``landslide_f1``, ``background_iou``: a background IoU of 0 means no true negative).

    Args:
        values: metric name (without the stage prefix) to value, NaN where undefined.

    Returns:
        The names among ``macro_precision``, ``macro_recall``, ``macro_f1`` that their code prints as NaN.
    """

    def nan(name: str) -> bool:
        return name in values and math.isnan(values[name])

    def equal(name: str, x: float) -> bool:
        return name in values and values[name] == x

    no_true_negative = equal('background_iou', 0.0) or nan('background_iou')
    background_never_predicted = no_true_negative and (equal('landslide_recall', 1.0) or nan('landslide_recall'))
    background_never_present = no_true_negative and (equal('landslide_precision', 1.0) or nan('landslide_precision'))
    undefined = {
        'macro_precision': background_never_predicted or nan('landslide_precision'),
        'macro_recall': background_never_present or nan('landslide_recall'),
        'macro_f1': no_true_negative or nan('landslide_f1'),
    }
    return [name for name, is_nan in undefined.items() if is_nan]


def _rows(out: Path) -> list[dict[str, Any]]:
    """One row per finished run and evaluated split, metrics in percent, paper numbers on the selection split."""
    rows = []
    for run in RUNS:
        path = out / run.name / 'result.json'
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        for split in sorted(result['metrics'], key=lambda s: ('val', 'test').index(s)):
            values = result['metrics'][split]
            paper = PAPER.get(run.dataset, {}) if split == 'val' and run.model == 'SAM-CFFNet' else {}
            row: dict[str, Any] = {
                'run': run.name, 'model': run.model, 'dataset': run.dataset, 'recipe': run.recipe,
                'split': 'val (selection)' if split == 'val' else 'test',
                'split_note': run.split_note if split == 'val' else 'held out: never used for selection',
                'epochs': result['epochs'], 'best_epoch': result['best_epoch'],
                'checkpoint': result['best_checkpoint'], 'dry_run': result['dry_run'],
            }  # fmt: skip
            for name, _, column in METRICS:
                value = values.get(name)
                row[column] = None if value is None else 100.0 * value
                if name in ('landslide_iou', 'miou', 'macro_f1', 'macro_precision', 'macro_recall'):
                    row[f'paper_{column}'] = paper.get(name)
            row['authors_nan'] = ' '.join(authors_nan(values))
            ours, theirs = row['landslide_iou_pct'], row['paper_landslide_iou_pct']
            row['delta_landslide_iou_pct'] = None if ours is None or theirs is None else ours - theirs
            rows.append(row)
    return rows


def write_table(out: Path, command: Sequence[str] | None = None) -> tuple[Path, Path]:
    """Write ``reproduce.md`` and ``reproduce.csv`` in ``out`` from every finished run's ``result.json``.

    Returns:
        The Markdown and CSV paths.
    """
    rows = _rows(out)
    columns = ['run', 'model', 'dataset', 'split', 'epochs', 'best_epoch', 'landslide_iou_pct',
               'paper_landslide_iou_pct', 'delta_landslide_iou_pct', 'miou_pct', 'paper_miou_pct', 'macro_f1_pct',
               'paper_macro_f1_pct', 'landslide_f1_pct', 'macro_precision_pct', 'paper_macro_precision_pct',
               'macro_recall_pct', 'paper_macro_recall_pct', 'overall_accuracy_pct', 'split_note', 'recipe',
               'checkpoint', 'dry_run', 'authors_nan']  # fmt: skip
    table_csv = out / 'reproduce.csv'
    tmp = table_csv.with_name('.reproduce.csv.partial')
    with tmp.open('w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    os.replace(tmp, table_csv)
    dry = any(r['dry_run'] for r in rows)
    lines = ["# SAM-CFFNet and TransLandSeg under the authors' protocol, beside the paper", '']
    if command:
        lines += [f'Command: `{" ".join(command)}`', '']
    if dry:
        lines += ['**DRY RUN**: synthetic data, a tiny SAM encoder with random weights, 1 epoch. The numbers only show '
                  'that the pipeline runs end to end; they say nothing about landslide mapping.', '']  # fmt: skip
    lines += [
        '| run | split | epochs | best epoch | landslide IoU | paper | Δ | mIoU | paper | macro F1 | paper | '
        'landslide F1 | macro P | paper | macro R | paper |',
        '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    ]
    for r in rows:
        delta = r['delta_landslide_iou_pct']

        def macro(name: str, r: dict[str, Any] = r) -> str:  # † where the authors' code prints NaN
            return _pct(r[f'{name}_pct']) + (' †' if name in r['authors_nan'].split() else '')

        lines.append(
            f'| {r["run"]} | {r["split"]} | {r["epochs"]} | {r["best_epoch"]} | {_pct(r["landslide_iou_pct"])} | '
            f'{_pct(r["paper_landslide_iou_pct"])} | {"–" if delta is None else f"{delta:+.2f}"} | '
            f'{_pct(r["miou_pct"])} | {_pct(r["paper_miou_pct"])} | {macro("macro_f1")} | '
            f'{_pct(r["paper_macro_f1_pct"])} | {_pct(r["landslide_f1_pct"])} | {macro("macro_precision")} | '
            f'{_pct(r["paper_macro_precision_pct"])} | {macro("macro_recall")} | '
            f'{_pct(r["paper_macro_recall_pct"])} |'
        )
    if not rows:
        lines.append('| (no finished run) | | | | | | | | | | | | | | | |')
    lines += [
        '',
        'All values in percent, from one confusion matrix over the whole split. **landslide IoU**: IoU of the '
        'landslide class (the paper\'s "IoU"); **mIoU**: mean IoU over background and landslide; **macro F1 / P / R**: '
        'mean over the two classes (the paper\'s "F1", "Precision", "Recall"); **landslide F1**: the landslide class '
        "only (the Landslide4Sense competition's F1). SAM-CFFNet recipes predict `logit > 0.5` as the authors' "
        'code, TransLandSeg recipes `probability > 0.5` as theirs.',
        '',
        "**†**: the authors' code prints NaN here (column `authors_nan` of the CSV): a class never predicted, never "
        'present, or without a single true positive makes its precision, recall or F1 0 / 0, and their macro mean '
        '`(x_0 + x_1) / 2` is then NaN; ours is the mean over the classes where it is defined.',
        '',
        '**split**: "val (selection)" is the split the best epoch was chosen on, which is what the authors reported '
        '(their code has no test split); "test" is a held-out split, where the recipe has one. Epochs are counted '
        'from 1.',
        '',
        'Split of each run: '
        + '; '.join(f'{r.name}: {r.split_note}' for r in RUNS if any(x['run'] == r.name for x in rows)),
        '',
        f"Paper numbers: {PAPER_SOURCE}. What differs from the authors' code: docs/reference_protocol.md.",
        '',
    ]
    md = out / 'reproduce.md'
    tmp_md = md.with_name('.reproduce.md.partial')
    tmp_md.write_text('\n'.join(lines))
    os.replace(tmp_md, md)
    return md, table_csv
