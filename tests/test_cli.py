"""The real CLI, torchgeo-trainer style: every dataset recipe through fit/validate/test/predict on tiny inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cli_process
import pytest
import torch
from conftest import model_flags

from sam_cffnet.cli import main
from sam_cffnet.errors import ConfigError
from sam_cffnet.models import build_model
from sam_cffnet.models.encoders.sam import SAMEncoder
from sam_cffnet.recipes import resolve_config, shipped_configs
from sam_cffnet.tasks import SegmentationTask

TINY_MODEL = {'variant': 'vit_tiny', 'input_size': None, 'sam_checkpoint': None}
DATASETS = ['bijie', 'landslide4sense', 'gvlm', 'reference_tiles']


def tiny_args(config: str, root: Path, tmp_path: Path, *extra: str, model_args: dict | None = None) -> list[str]:
    args = [
        '--config', config,
        '--data.init_args.root', str(root),
        '--data.init_args.tile_size', '64',
        '--data.init_args.batch_size', '2',
        '--data.init_args.num_workers', '0',
        *model_flags(TINY_MODEL if model_args is None else model_args),
        '--trainer.accelerator', 'cpu',
        '--trainer.devices', '1',
        '--trainer.logger', 'false',
        '--trainer.enable_progress_bar', 'false',
        '--trainer.default_root_dir', str(tmp_path),
    ]  # fmt: skip
    if config == 'gvlm.yaml':
        args += ['--data.init_args.stride', '64']
    return args + list(extra)


def last_checkpoint(trainer: object) -> str:
    """The path of the ``last.ckpt`` a fit wrote (the LastCheckpoint callback's)."""
    from sam_cffnet.callbacks import LastCheckpoint

    return next(c.last_model_path for c in trainer.callbacks if isinstance(c, LastCheckpoint))  # type: ignore[attr-defined]


@pytest.mark.parametrize('name', DATASETS)
def test_every_recipe_runs_every_subcommand(name: str, fake_roots: dict[str, Path], tmp_path: Path) -> None:
    for command in ('fit', 'validate', 'test', 'predict'):
        args = tiny_args(f'{name}.yaml', fake_roots[name], tmp_path, '--trainer.fast_dev_run', 'true')
        cli = main([command, *args])
        assert cli.trainer.state.finished, command
        if command == 'predict':
            written = sorted((tmp_path / 'predictions').glob('*_mask.png'))
            assert written and (tmp_path / 'predictions' / 'overview.png').is_file()
            with pytest.raises(FileExistsError, match='already holds predictions'):
                main([command, *args])
        if command == 'validate':
            assert 'val_landslide_iou' in cli.trainer.callback_metrics
            assert 'val_macro_f1' in cli.trainer.callback_metrics


def test_print_config_and_bare_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert 'bijie.yaml' in shipped_configs() and 'demo.yaml' in shipped_configs()
    assert Path(resolve_config('bijie')).is_file()
    assert Path(resolve_config('configs/bijie.yaml')).is_file()
    with pytest.raises(SystemExit):
        main(['fit', '--config', 'bijie.yaml', '--print_config'])
    out = capsys.readouterr().out
    assert 'sam_cffnet.datamodules.BijieDataModule' in out and 'max_epochs: 30' in out and 'lr: 0.0002' in out


def test_resume_and_slim_checkpoint(fake_roots: dict[str, Path], tmp_path: Path) -> None:
    # a tiny "official" SAM checkpoint, so that the checkpoint can leave the frozen encoder out
    sam = tmp_path / 'sam_vit_tiny.pth'
    enc = SAMEncoder('vit_tiny')
    torch.save({f'image_encoder.{k}': v for k, v in enc.vit.state_dict().items()}, sam)
    model_args = {'variant': 'vit_tiny', 'input_size': None, 'sam_checkpoint': str(sam)}
    common = tiny_args('bijie.yaml', fake_roots['bijie'], tmp_path, model_args=model_args)
    limits = ['--trainer.limit_train_batches', '2', '--trainer.limit_val_batches', '1']
    cli = main(['fit', *common, *limits, '--trainer.max_epochs', '1'])
    last = Path(last_checkpoint(cli.trainer))
    assert cli.trainer.global_step == 2
    ckpt = torch.load(last, weights_only=True)
    assert not [k for k in ckpt['state_dict'] if k.startswith('model.encoder.vit.')]
    assert ckpt['sam_cffnet']['external_keys'] and ckpt['sam_cffnet']['preprocessing']['tile_size'] == 64
    assert ckpt['sam_cffnet']['model']['class_path'].endswith('SAMCFFNet')
    assert ckpt['lr_schedulers'] and ckpt['optimizer_states']

    resumed_dir = ['--trainer.default_root_dir', str(tmp_path / 'resumed')]
    cli2 = main(['fit', *common, *limits, *resumed_dir, '--trainer.max_epochs', '2', '--ckpt_path', str(last)])
    assert cli2.trainer.global_step == 4 and cli2.trainer.current_epoch == 2
    # the scheduler was restored from the checkpoint (T_max of the first run) and stepped on: exact resume
    scheduler = cli2.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.T_max == 1 and scheduler.last_epoch == 2
    assert cli2.trainer.optimizers[0].state  # AdamW moments restored

    # one call loads it back (frozen weights rebuilt from the SAM file), same outputs as the trained model
    task = SegmentationTask.from_checkpoint(last)
    trained = cli.model.eval()  # the model in memory at the end of the first run, when last.ckpt was written
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(task(x), trained(x))
    assert task.preprocessing.tile_size == 64

    # another SAM file -> refused, naming the file trained with
    other = tmp_path / 'other.pth'
    torch.manual_seed(1)
    torch.save({f'image_encoder.{k}': v for k, v in SAMEncoder('vit_tiny').vit.state_dict().items()}, other)
    with pytest.raises(ValueError, match='frozen encoder weights differ'):
        SegmentationTask.from_checkpoint(last, sam_checkpoint=str(other))

    # a checkpoint of another model is refused (the CLI itself rebuilds the model from the checkpoint's
    # hyper-parameters; a script can mix them up)
    from lightning.pytorch import Trainer

    from sam_cffnet.datamodules import BijieDataModule

    other_task = SegmentationTask(build_model('sam_psp', variant='vit_tiny', input_size=None))
    dm = BijieDataModule(root=str(fake_roots['bijie']), tile_size=64, batch_size=2)
    trainer = Trainer(accelerator='cpu', logger=False, enable_progress_bar=False, default_root_dir=tmp_path / 'o')
    with pytest.raises(ValueError, match=r"trained with model '[\w.]*SAMCFFNet'"):
        trainer.validate(other_task, dm, ckpt_path=last)

    # export: self-contained, loads without the SAM file
    from sam_cffnet.tasks import export_checkpoint

    shared = export_checkpoint(last, tmp_path / 'shared.ckpt')
    sam.unlink()
    assert torch.equal(SegmentationTask.from_checkpoint(shared)(x), trained(x))
    with pytest.raises(FileExistsError, match='overwrite'):
        export_checkpoint(last, shared)


def test_authors_checkpoint_evaluates_and_fine_tunes_through_the_cli(
    fake_roots: dict[str, Path], tmp_path: Path
) -> None:
    """A checkpoint in the authors' .pth.tar format is validated, with the paper's metric rule, and fine-tuned."""
    from sam_cffnet import SAMCFFNet
    from sam_cffnet.metrics import LandslideMetrics
    from sam_cffnet.models.reference import ours_to_reference
    from sam_cffnet.thresholds import ThresholdRule

    torch.manual_seed(3)
    released = SAMCFFNet(variant='vit_tiny', input_size=None).eval()
    for module in released.modules():  # non-trivial BatchNorm statistics, as a trained model has
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / 'GVLM_best.pth.tar'
    torch.save({'epoch': 12, 'state_dict': ours_to_reference(released.state_dict()), 'optimizer': {}}, path)
    model_args = {'variant': 'vit_tiny', 'input_size': None, 'sam_checkpoint': None, 'reference_checkpoint': str(path)}
    args = tiny_args('reference_tiles.yaml', fake_roots['reference_tiles'], tmp_path, model_args=model_args)
    args += ['--model.threshold_on_logits', 'true']
    cli = main(['validate', *args])

    metrics = LandslideMetrics(ThresholdRule(0.5, on_logits=True))
    with torch.no_grad():
        for batch in cli.datamodule.val_dataloader():
            batch = cli.datamodule.on_after_batch_transfer(batch, 0)
            metrics.update(released(batch['image']), batch['mask'])
    expected = metrics.compute()
    for name in ('landslide_iou', 'miou', 'macro_f1'):
        assert float(cli.trainer.callback_metrics[f'val_{name}']) == pytest.approx(float(expected[name]), abs=1e-6)

    limits = ['--trainer.max_epochs', '1', '--trainer.limit_train_batches', '1', '--trainer.limit_val_batches', '1']
    fit = main(['fit', *args, *limits, '--trainer.default_root_dir', str(tmp_path / 'fine_tune')])
    last = Path(last_checkpoint(fit.trainer))
    state = torch.load(last, weights_only=True)['state_dict']
    assert not [k for k in state if k.startswith('model.encoder.vit.')]  # rebuilt from the authors' file
    tuned = SegmentationTask.from_checkpoint(last)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(tuned(x), fit.model.eval()(x))
        assert not torch.equal(tuned(x), released(x))  # the decoder moved
    with pytest.raises(ValueError, match='either sam_checkpoint'):
        SAMCFFNet(variant='vit_tiny', sam_checkpoint=str(path), reference_checkpoint=str(path))


def test_clear_errors_before_training(fake_roots: dict[str, Path], tmp_path: Path) -> None:
    missing_sam = {'variant': 'vit_tiny', 'input_size': None, 'sam_checkpoint': '/nowhere/sam_vit_l.pth'}
    with pytest.raises(FileNotFoundError, match=r'/nowhere/sam_vit_l\.pth'):
        main(['fit', *tiny_args('bijie.yaml', fake_roots['bijie'], tmp_path, model_args=missing_sam)])
    with pytest.raises(Exception, match='nowhere'):
        main(['fit', *tiny_args('bijie.yaml', tmp_path / 'nowhere', tmp_path, '--trainer.fast_dev_run', 'true')])
    # the command line links in_channels from the data; a script that builds a mismatching pair is stopped
    from lightning.pytorch import Trainer

    from sam_cffnet.datamodules import BijieDataModule

    task = SegmentationTask(build_model('sam_cffnet', variant='vit_tiny', input_size=None, in_channels=4))
    dm = BijieDataModule(root=str(fake_roots['bijie']), tile_size=64, batch_size=2)
    trainer = Trainer(accelerator='cpu', logger=False, enable_progress_bar=False, fast_dev_run=True)
    with pytest.raises(ValueError, match='band count mismatch: the data delivers 3-band'):
        trainer.fit(task, dm)


def test_command_line_reports_bad_input_without_traceback(tmp_path: Path) -> None:
    """From the shell, a missing file is one line naming it (exit 2); SAM_CFFNET_TRACEBACK=1 shows where."""
    command = ['map', '--checkpoint', str(tmp_path / 'missing.ckpt')]
    command += ['--input', str(tmp_path / 'scene.tif'), '--output', str(tmp_path / 'map.tif')]
    env = cli_process.user_env()
    run = cli_process.run(command, cwd=tmp_path, env=env, timeout=120)
    assert run.returncode == 2, run.stderr
    assert 'sam_cffnet: error:' in run.stderr and 'missing.ckpt' in run.stderr
    assert 'Traceback' not in run.stderr
    run = cli_process.run(command, cwd=tmp_path, env={**env, 'SAM_CFFNET_TRACEBACK': '1'}, timeout=120)
    assert run.returncode == 1 and 'Traceback' in run.stderr


def test_tools(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(['models']) == 0
    assert 'sam_cffnet' in capsys.readouterr().out.split()
    assert main(['configs']) == 0
    assert 'bijie.yaml' in capsys.readouterr().out
    assert main(['report', '--config', 'bijie.yaml', '--csv', '-']) == 0
    header, row = capsys.readouterr().out.strip().splitlines()[-2:]
    values = dict(zip(header.split(','), row.split(','), strict=True))
    assert values['model'] == 'sam_cffnet' and values['params_trainable'] == '4258723'


DDP_SCRIPT = """
import json, sys
from sam_cffnet.cli import main
cli = main(sys.argv[2:])
if cli.trainer.global_rank == 0:
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith('val_')}
    open(sys.argv[1], 'w').write(json.dumps(metrics))
"""


def test_ddp_two_processes_match_single_process(fake_roots: dict[str, Path], tmp_path: Path) -> None:
    """A 2-process DDP (gloo) validation gives the same global metrics as one process."""
    sam = tmp_path / 'sam.pth'
    torch.save({f'image_encoder.{k}': v for k, v in SAMEncoder('vit_tiny').vit.state_dict().items()}, sam)
    model_args = {'variant': 'vit_tiny', 'input_size': None, 'sam_checkpoint': str(sam)}
    # 3 val tiles over 2 ranks: an uneven split, which Lightning's default sampler would pad with a repeated tile
    args = tiny_args('reference_tiles.yaml', fake_roots['reference_tiles'], tmp_path, model_args=model_args)
    args += ['--trainer.max_epochs', '1', '--trainer.limit_train_batches', '1']
    cli = main(['fit', *args])
    ckpt = last_checkpoint(cli.trainer)
    script = tmp_path / 'run.py'
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parents[1])}
    validate = ['validate', *args, '--ckpt_path', ckpt, '--data.init_args.batch_size', '1']
    results = {}
    # one process: in this one (DDP is what the other run tests)
    single = main([*validate, '--trainer.devices', '1', '--trainer.default_root_dir', str(tmp_path / 'ddp1')])
    results['1'] = {k: float(v) for k, v in single.trainer.callback_metrics.items() if k.startswith('val_')}
    # two processes: Lightning starts the second by re-running the script's command line
    out = tmp_path / 'metrics_2.json'
    cmd = [sys.executable, str(script), str(out), *validate, '--trainer.devices', '2', '--trainer.strategy', 'ddp',
           '--trainer.default_root_dir', str(tmp_path / 'ddp2')]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'sync_dist' not in proc.stderr  # the metrics are synchronised: Lightning must not warn about them
    results['2'] = json.loads(out.read_text())
    assert results['1'].keys() == results['2'].keys()
    for key in ('val_landslide_iou', 'val_miou', 'val_macro_f1', 'val_overall_accuracy'):
        assert results['2'][key] == pytest.approx(results['1'][key], abs=1e-6), key


def test_demo_recipe_generates_its_data_and_says_it_is_a_demo(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / 'demo_data' / 'bijie'
    args = ['fit', '--config', 'demo.yaml', '--data.init_args.root', str(root), '--data.init_args.tile_size', '64',
            '--trainer.fast_dev_run', 'true', '--trainer.logger', 'false', '--trainer.enable_progress_bar', 'false',
            '--trainer.default_root_dir', str(tmp_path)]  # fmt: skip
    with caplog.at_level('INFO'):
        cli = main(args)
    assert cli.trainer.state.finished
    assert (root / 'Bijie-landslide-dataset' / 'landslide' / 'mask').is_dir()
    assert 'DEMO RUN' in caplog.text and 'RANDOM weights' in caplog.text


def test_null_on_the_command_line_means_none(fake_roots: dict[str, Path], tmp_path: Path) -> None:
    args = tiny_args('bijie.yaml', fake_roots['bijie'], tmp_path, '--trainer.fast_dev_run', 'true')
    args += ['--model.model.sam_checkpoint', 'checkpoints/sam_vit_l_0b3195.pth', '--model.model.sam_checkpoint', 'null']
    cli = main(['fit', *args])
    assert cli.model.model.encoder.checkpoint_path is None


def test_mistakes_are_refused_before_any_work(fake_roots: dict[str, Path], tmp_path: Path) -> None:
    """A mistyped recipe points to the list of recipes without 70 lines of usage; abbreviated options are refused; an
    existing prediction folder is refused before the model is built (no logger folder left behind)."""
    env = cli_process.user_env()
    run = cli_process.run(['fit', '--config', 'bijee.yaml'], cwd=tmp_path, env=env, timeout=120)
    assert run.returncode == 2 and 'python -m sam_cffnet configs' in run.stderr
    assert len(run.stderr.strip().splitlines()) <= 2 and 'usage' not in run.stderr
    # argparse prefix matching would take max_epoch for max_epochs; the refusal is one line with the right name
    with pytest.raises(ConfigError, match=r'unknown option --trainer\.max_epoch; did you mean --trainer\.max_epochs\?'):
        main(['fit', *tiny_args('bijie.yaml', fake_roots['bijie'], tmp_path), '--trainer.max_epoch', '1'])

    out = tmp_path / 'preds'
    out.mkdir()
    (out / 'tile_000000_mask.png').write_bytes(b'')
    logs = tmp_path / 'logs'
    args = [
        *tiny_args('bijie.yaml', fake_roots['bijie'], tmp_path),
        '--prediction_writer.output_dir',
        str(out),
        '--trainer.logger',
        f'{{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {{"save_dir": "{logs}"}}}}',
        '--model.model.band_indices',
        '[0, 1, 7]',
    ]  # a model that cannot be built: it must not get that far
    with pytest.raises(FileExistsError, match='already holds predictions'):
        main(['predict', *args])
    assert not logs.exists()


def test_torchgeo_denormalization_and_rgb_bands() -> None:
    """torchgeo's tasks plot ``K.Denormalize(datamodule.mean, datamodule.std)(batch)``: that must give raw values
    back for every normalization; 14-band Landslide4Sense pictures show B4, B3, B2."""
    import kornia.augmentation as K

    from sam_cffnet.datamodules import BijieDataModule, Landslide4SenseDataModule

    raw = torch.rand(2, 3, 8, 8) * 200
    for normalization in ('reference', 'dataset', 'none'):
        dm = BijieDataModule(root='unused', normalization=normalization)
        x = dm.preprocessing.normalize_image(raw)
        back = K.Denormalize(dm.mean, dm.std)(x)
        assert torch.allclose(back, raw, rtol=1e-4, atol=1e-3), normalization
    l4s = Landslide4SenseDataModule(root='unused', bands='all')
    assert l4s.preprocessing.rgb_indices == (3, 2, 1)
    assert [l4s.bands[i] for i in l4s.preprocessing.rgb_indices] == ['B4', 'B3', 'B2']


def test_a_user_error_raised_while_building_the_datamodule_is_one_line(fake_roots: dict[str, Path]) -> None:
    """jsonargparse wraps exceptions raised in a class's constructor: the CLI still reports the user's mistake."""
    env = cli_process.user_env()
    command = ['fit', '--config', 'gvlm.yaml', '--data.init_args.root', str(fake_roots['gvlm']),
               '--data.init_args.train_sites', '[a]', *model_flags(TINY_MODEL)]  # fmt: skip
    run = cli_process.run(command, cwd=os.getcwd(), env=env, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert 'sam_cffnet: error:' in run.stderr and 'must be given together' in run.stderr
    assert 'Traceback' not in run.stderr


@pytest.mark.parametrize('command', [['--version'], ['configs']])
def test_version_and_recipe_list_import_neither_torch_nor_lightning(command: list[str]) -> None:
    """``configs`` took 6 s and 880 MiB to list YAML files (it imported torch); ``--version`` printed Lightning's."""
    from importlib.metadata import version

    run = subprocess.run([sys.executable, '-X', 'importtime', '-m', 'sam_cffnet', *command], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    imported = {line.rsplit('|', 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith('import time:')}
    assert not imported & {'torch', 'lightning', 'numpy'}, sorted(imported & {'torch', 'lightning', 'numpy'})
    if command == ['--version']:
        assert run.stdout.strip() == f'sam_cffnet {version("sam-cffnet")}'
    else:
        assert 'bijie.yaml' in run.stdout and 'reference/sam_cffnet_bijie.yaml' in run.stdout


def test_an_option_typo_is_one_line_with_the_name_meant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo used to print 97 lines of usage with the useful line buried, under ``__main__.py``."""
    env = cli_process.user_env()
    run = cli_process.run(['fit', '--config', 'demo.yaml', '--data.init_args.tile_sise', '64'], cwd=tmp_path, env=env,
                          timeout=300)  # fmt: skip
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith('sam_cffnet: error:')]
    assert len(errors) == 1 and "did you mean 'tile_size'" in errors[0] and 'usage' not in run.stderr, run.stderr
    assert not (tmp_path / 'runs').exists()
    with pytest.raises(SystemExit) as info:  # the help text, from the same entry in-process
        main(['fit', '--help'])
    usage = capsys.readouterr().out
    assert info.value.code == 0 and usage.startswith('usage: python -m sam_cffnet [options] fit'), usage[:300]
    assert '__main__.py' not in usage


def test_models_lists_the_key_the_recipes_use(capsys: pytest.CaptureFixture[str]) -> None:
    """``models`` said ``model.init_args.model.class_path``; the recipes (and LightningCLI) use ``model.model``."""
    assert main(['models']) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert 'model.model.class_path' in header and 'init_args' not in header
    assert 'model:\n  model:\n    class_path:' in Path(resolve_config('bijie.yaml')).read_text()


@pytest.mark.parametrize(
    ('argv', 'meant'),
    [
        (['map', '--inptu', 'x.tif'], '--input'),
        (['evaluate', '--inptu', 'x.tif'], '--input'),
        (['extract-features', '--outptu', 'feats', '--images', 'tiles'], '--output'),
        (['export', 'a.ckpt', 'b.ckpt', '--overwirte'], '--overwrite'),
        (['report', '--config', 'demo.yaml', '--csvv', 'x.csv'], '--csv'),
        (['configs', '--verbos'], None),
        (['models', '--al'], None),
        (['reproduce', '--dryrun'], '--dry-run'),
    ],
)
def test_every_tool_parses_with_one_parser_and_names_a_typo(argv: list[str], meant: str | None) -> None:
    """``map``/``evaluate`` printed their whole usage for a typo; ``configs``/``models``/``export``/``report``/
    ``reproduce`` used argparse: every command now raises one :class:`ConfigError` line naming the option (and the one
    meant)."""
    with pytest.raises(ConfigError) as info:
        main(argv)
    line = str(info.value)
    assert '\n' not in line, line
    assert 'unknown option' in line and f'python -m sam_cffnet {argv[0]} --help' in line, line
    if meant is not None:
        assert f'did you mean {meant}?' in line, line


def test_map_typo_is_one_line_not_its_usage(tmp_path: Path) -> None:
    env = cli_process.user_env()
    run = cli_process.run(['map', '--inptu', 'x.tif'], cwd=tmp_path, env=env, timeout=300)
    assert run.returncode == 2 and 'usage' not in run.stderr, run.stderr[-2000:]
    assert run.stderr.splitlines()[0].startswith('sam_cffnet: error: unknown option --inptu; did you mean --input?')


def test_output_piped_into_a_reader_that_stops_ends_quietly() -> None:
    """``python -m sam_cffnet configs | head -1`` printed a BrokenPipeError traceback."""
    run = subprocess.run(f'"{sys.executable}" -m sam_cffnet configs | true', shell=True, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert 'Traceback' not in run.stderr and 'BrokenPipeError' not in run.stderr, run.stderr
