"""A checkpoint or a config never runs code, and a bad ``--ckpt_path`` is one line before any work.

The commands run as a user runs them (``python -m sam_cffnet ...`` in a subprocess, from a folder of their own); the
planted checkpoints hold a pickle that would create a file when unpickled, so "no file created" is what is checked,
not a mock of ``torch.load``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import model_flags
from PIL import Image
from test_user_errors import assert_user_error, run_cli

from sam_cffnet.errors import CheckpointError, ConfigError, MissingFileError

TINY_SAM = {'variant': 'vit_tiny', 'input_size': None, 'sam_checkpoint': None}


class _Planted:
    """Unpickling this runs ``touch <marker>`` (what an attacker's checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f'touch {self.marker}',)


def plant(path: Path, marker: Path) -> Path:
    """A file that looks like a Lightning checkpoint and creates ``marker`` when fully unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': {}, 'epoch': 3, 'optimizer_states': [], 'loops': {}, 'payload': _Planted(marker)}, path)
    return path


def one_line_exit_2(run: subprocess.CompletedProcess[str], *named: str) -> str:
    """:func:`test_user_errors.assert_user_error`, and no usage and none of torch's advice to load unsafely."""
    line = assert_user_error(run, *named)
    assert 'usage:' not in run.stderr, run.stderr[-3000:]
    assert 'will likely succeed' not in run.stderr and 'weights_only set to False' not in run.stderr
    return line


def bijie_args(command: str, root: Path, *extra: str) -> list[str]:
    """``command`` on the Bijie recipe with a tiny model, logging to ``runs/`` of the working folder."""
    return [
        command, '--config', 'bijie.yaml', '--data.init_args.root', str(root), '--data.init_args.tile_size', '64',
        '--data.init_args.batch_size', '2', '--data.init_args.num_workers', '0', '--trainer.accelerator', 'cpu',
        '--trainer.devices', '1', '--trainer.max_epochs', '1', '--trainer.enable_progress_bar', 'false',
        *model_flags(TINY_SAM), *extra,
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------- code in files
def test_fit_resume_never_unpickles_a_planted_last_checkpoint(
    fake_roots: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fit --ckpt_path last --weights_only false`` used to load a planted ``last.ckpt`` with full unpickling."""
    marker = tmp_path / 'PWNED'
    dirpath = tmp_path / 'ck'
    plant(dirpath / 'last.ckpt', marker)
    args = bijie_args('fit', fake_roots['bijie'], '--checkpoint.dirpath', str(dirpath), '--ckpt_path', 'last')
    one_line_exit_2(run_cli(*args, '--weights_only', 'false', cwd=tmp_path), '--weights_only false is refused')
    assert not marker.exists()
    # without the flag, the planted file is found, read safely and refused as code, before any run folder is made
    one_line_exit_2(run_cli(*args, cwd=tmp_path), str(dirpath / 'last.ckpt'), 'holds Python code', 'posix.system')
    assert not marker.exists()
    assert not (tmp_path / 'runs').exists()
    # the same in a config file (the same entry, in-process)
    from sam_cffnet.cli import main

    config = tmp_path / 'resume.yaml'
    config.write_text('ckpt_path: last\nweights_only: false\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match='--weights_only false is refused'):
        main([*args, '--config', str(config)])
    assert not marker.exists() and not (tmp_path / 'runs').exists()


def test_map_and_export_call_a_planted_checkpoint_code_not_corrupt(tmp_path: Path) -> None:
    marker = tmp_path / 'PWNED'
    ckpt = plant(tmp_path / 'model.ckpt', marker)
    scene = tmp_path / 'scene.png'
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(scene)
    run = run_cli('map', '--checkpoint', str(ckpt), '--input', str(scene), '--output', str(tmp_path / 'm.tif'),
                  cwd=tmp_path)  # fmt: skip
    line = one_line_exit_2(run, str(ckpt), 'refused', 'holds Python code')
    assert 'corrupt' not in line
    run = run_cli('export', str(ckpt), str(tmp_path / 'weights.pth'), cwd=tmp_path)
    line = one_line_exit_2(run, str(ckpt), 'refused', 'holds Python code')
    assert 'corrupt' not in line
    assert not marker.exists()


def test_a_config_callable_from_outside_known_packages_is_refused(fake_roots: dict[str, Path], tmp_path: Path) -> None:
    """``LambdaCallback(on_fit_start=os.system)`` in a config used to import and call ``os.system``."""
    marker = tmp_path / 'PWNED'
    config = tmp_path / 'lambda.yaml'
    config.write_text(
        'trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.LambdaCallback\n      init_args:\n'
        '        on_fit_start: os.system\n'
    )
    run = run_cli(*bijie_args('fit', fake_roots['bijie'], '--config', str(config)), cwd=tmp_path)
    one_line_exit_2(run, 'on_fit_start', 'posix.system is refused', 'SAM_CFFNET_ALLOWED_CALLABLES')
    assert not marker.exists() and not (tmp_path / 'runs').exists()


def test_callables_of_known_packages_and_named_packages_pass() -> None:
    import math
    from functools import partial

    from sam_cffnet.config_safety import check_config_callables

    check_config_callables({'a': {'b': [torch.optim.Adam, partial(math.cos)]}, 'c': 'os.system'})  # strings are data
    with pytest.raises(ConfigError, match=r'a\.b\[1\]: posix\.system'):
        check_config_callables({'a': {'b': [torch.optim.Adam, os.system]}})
    check_config_callables({'a': os.system}, allowed=('posix',))
    with pytest.raises(ConfigError, match=r'a: posix\.system is refused'):
        check_config_callables({'a': partial(os.system, 'x')})


# ---------------------------------------------------------------------------------------------- bad files
def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the one line must say)."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / 'good.ckpt'
    torch.save({'state_dict': {'w': torch.zeros(64, 64)}, 'optimizer_states': [], 'loops': {}}, good)
    data = good.read_bytes()
    files = {
        'missing': (folder / 'missing.ckpt', 'does not exist'),
        'empty': (folder / 'empty.ckpt', 'is empty'),
        'truncated': (folder / 'truncated.ckpt', 'ends early'),
        '1 KB': (folder / 'one_kb.ckpt', 'not'),
        'PNG': (folder / 'image.ckpt', 'is a PNG image, not a PyTorch checkpoint'),
        'text': (folder / 'notes.ckpt', 'is a text file, not a PyTorch checkpoint'),
    }
    files['empty'][0].write_bytes(b'')
    files['truncated'][0].write_bytes(data[: len(data) // 2])
    files['1 KB'][0].write_bytes(os.urandom(1024))
    files['PNG'][0].write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(200))
    files['text'][0].write_text('model: sam_cffnet\nepochs: 30\n')
    return files


@pytest.mark.parametrize('subcommand', ['fit', 'validate', 'test', 'predict'])
def test_every_bad_checkpoint_file_is_refused_in_one_message(subcommand: str, tmp_path: Path) -> None:
    from sam_cffnet.tasks.run_checkpoint import check_run_checkpoint

    for name, (path, said) in _bad_files(tmp_path).items():
        error = MissingFileError if name == 'missing' else CheckpointError
        with pytest.raises(error) as info:
            check_run_checkpoint(path, subcommand)
        message = str(info.value)
        assert str(path) in message and said in message and '\n' not in message, (name, message)
        assert 'will likely succeed' not in message


def test_weights_only_checkpoint_cannot_resume_a_fit(tmp_path: Path) -> None:
    from sam_cffnet.tasks.run_checkpoint import check_checkpoint_bands, check_run_checkpoint

    weights = tmp_path / 'weights.ckpt'
    torch.save({'state_dict': {'w': torch.zeros(2)}}, weights)
    assert check_run_checkpoint(weights, 'validate') == {'model': None, 'in_channels': None}
    with pytest.raises(CheckpointError, match='holds model weights only'):
        check_run_checkpoint(weights, 'fit')
    with pytest.raises(ConfigError, match='trained on 4-band images, but the data delivers 3 bands'):
        check_checkpoint_bands({'in_channels': 4}, 3, weights)


@pytest.mark.parametrize(
    ('subcommand', 'case', 'through'), [('fit', 'truncated', 'cli'), ('predict', 'text', 'cli'),
                                        ('validate', 'PNG', 'main'), ('test', 'empty', 'main'),
                                        ('validate', 'missing', 'main'), ('test', '1 KB', 'main')]
)  # fmt: skip
def test_bad_ckpt_path_is_one_line_before_any_run_folder(
    subcommand: str, case: str, through: str, fake_roots: dict[str, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Two cases through ``python -m sam_cffnet`` (exit 2, one line), the rest through the same entry in-process."""
    from sam_cffnet.cli import main
    from sam_cffnet.errors import SAMCFFNetError

    path, said = _bad_files(tmp_path / 'files')[case]
    extra = ['--prediction_writer.output_dir', str(tmp_path / 'preds')] if subcommand == 'predict' else []
    args = bijie_args(subcommand, fake_roots['bijie'], '--ckpt_path', str(path), *extra)
    if through == 'cli':
        one_line_exit_2(run_cli(*args, cwd=tmp_path), str(path), said)
    else:
        monkeypatch.chdir(tmp_path)  # the recipe logs to runs/ of the working folder
        with pytest.raises(SAMCFFNetError) as info:
            main(args)
        assert str(path) in str(info.value) and said in str(info.value) and '\n' not in str(info.value)
    assert not (tmp_path / 'runs').exists() and not (tmp_path / 'preds').exists()


def test_truncated_last_checkpoint_is_named_when_resuming(fake_roots: dict[str, Path], tmp_path: Path) -> None:
    dirpath = tmp_path / 'ck'
    dirpath.mkdir()
    good = dirpath / 'good.ckpt'
    torch.save({'state_dict': {'w': torch.zeros(64, 64)}, 'optimizer_states': [], 'loops': {}}, good)
    (dirpath / 'last.ckpt').write_bytes(good.read_bytes()[:700])
    args = bijie_args('fit', fake_roots['bijie'], '--checkpoint.dirpath', str(dirpath), '--ckpt_path', 'last')
    one_line_exit_2(run_cli(*args, cwd=tmp_path), str(dirpath / 'last.ckpt'), 'ends early')
    assert not (tmp_path / 'runs').exists()


def test_validate_refuses_a_checkpoint_of_another_band_count(fake_roots: dict[str, Path], tmp_path: Path) -> None:
    """A 4-band (RGB + DEM) checkpoint validated on 3-band data used to exit 0 with a metric."""
    from sam_cffnet.models import build_model
    from sam_cffnet.tasks.segmentation import SegmentationTask

    task = SegmentationTask(build_model('sam_cffnet', variant='vit_tiny', input_size=None, in_channels=4))
    ckpt: dict[str, Any] = {'state_dict': task.state_dict(), 'hyper_parameters': dict(task.hparams)}
    task.on_save_checkpoint(ckpt)
    path = tmp_path / 'rgb_dem.ckpt'
    torch.save(ckpt, path)
    run = run_cli(*bijie_args('validate', fake_roots['bijie'], '--ckpt_path', str(path)), cwd=tmp_path)
    one_line_exit_2(run, str(path), 'trained on 4-band images', 'delivers 3 bands')
