"""A user's mistake ends with one line naming the file or setting (exit 2); a bug shows its traceback (exit 1).

Every command runs as a user runs it: ``python -m sam_cffnet ...`` in a process of its own (tests/cli_process.py).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cli_process
import numpy as np
import pytest
import torch
from conftest import model_flags
from PIL import Image

from sam_cffnet.cli import main
from sam_cffnet.errors import CheckpointError, ConfigError, OutputExistsError, SAMCFFNetError

TINY_SAM = {'variant': 'vit_tiny', 'input_size': None, 'sam_checkpoint': None}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m sam_cffnet *args`` in a child process (one thread, no traceback switch), its output captured."""
    env = cli_process.user_env(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    return cli_process.run(args, cwd=cwd, env=env, timeout=600)


def assert_user_error(run: subprocess.CompletedProcess[str], *named: str) -> str:
    """Exit 2, no traceback, and exactly one ``sam_cffnet: error:`` line that names ``named``; returns that line."""
    assert run.returncode == 2, run.stderr[-3000:]
    assert 'Traceback' not in run.stderr, run.stderr[-3000:]
    lines = [line for line in run.stderr.splitlines() if line.startswith('sam_cffnet: error: ')]
    assert len(lines) == 1, run.stderr[-3000:]
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


def _bad_settings() -> dict[str, tuple[type[Exception], object]]:
    """Calls with a wrong setting -> (the built-in class callers catch, the call)."""
    from sam_cffnet.features.cache import FeatureCacheWriter, check_disk_space
    from sam_cffnet.features.extract import split_datasets
    from sam_cffnet.losses import BCEDiceLoss
    from sam_cffnet.models.decoders.cffd import CFFD
    from sam_cffnet.models.decoders.lawin import LawinASPP
    from sam_cffnet.models.decoders.sam_mask_decoder import PromptFreeMaskDecoder, build_sam_neck, load_sam_neck
    from sam_cffnet.models.encoders.attention import EncoderSpeedOptions
    from sam_cffnet.models.hpcl import ClassQueues, DEMBranch, HyperPixelizer, build_fusion, terrain_channels

    return {
        'loss dice_reduction': (ValueError, lambda _: BCEDiceLoss(dice_reduction='pixel')),
        'loss weights': (ValueError, lambda _: BCEDiceLoss(bce_weight=0, dice_weight=0)),
        'attention': (ValueError, lambda _: EncoderSpeedOptions(attention='flash')),  # type: ignore[arg-type]
        'CFFD channels': (ValueError, lambda _: CFFD(64, channels=100)),
        'Lawin heads': (ValueError, lambda _: LawinASPP(64, 64, ratios=(8, 4), heads=(8,))),
        'HPCL fusion': (ValueError, lambda _: build_fusion('sum', 8, 8)),  # type: ignore[arg-type]
        'DEM branch': (ValueError, lambda _: DEMBranch(in_channels=1, elevation_channel=None)),
        'terrain feature': (ValueError, lambda _: terrain_channels(['curvature'])),
        'hyperpixel mode': (ValueError, lambda _: HyperPixelizer(mode='voronoi')),  # type: ignore[arg-type]
        'queue size': (ValueError, lambda _: ClassQueues(size=0)),
        'no SAM neck in a file': (ValueError, lambda _: load_sam_neck(build_sam_neck(8), {'x': torch.zeros(1)})),
        'no mask decoder': (ValueError, lambda _: PromptFreeMaskDecoder(32).load_sam_weights({'x': torch.zeros(1)})),
        'feature split': (ValueError, lambda _: split_datasets(object(), ['holdout'])),
        'disk space': (OSError, lambda tmp: check_disk_space(tmp, 2**62)),
        'existing cache': (FileExistsError, lambda tmp: FeatureCacheWriter(tmp, {'num_tiles': 1}, [(1, 1, 1)])),
    }


@pytest.mark.parametrize('case', list(_bad_settings()))
def test_bad_settings_raise_user_errors(case: str, tmp_path: Path) -> None:
    """Each refusal is a SAMCFFNetError (one line, exit 2 from the CLI) and still the built-in class callers catch."""
    builtin, call = _bad_settings()[case]
    with pytest.raises(SAMCFFNetError) as info:
        call(tmp_path)  # type: ignore[operator]
    assert isinstance(info.value, builtin)
    if builtin is ValueError:
        assert isinstance(info.value, ConfigError | CheckpointError)
    if builtin is FileExistsError:
        assert isinstance(info.value, OutputExistsError)


def fit_args(root: Path, tmp_path: Path, *extra: str) -> list[str]:
    """A one-batch ``fit`` of a tiny model on a Bijie-layout root (no logger, CPU)."""
    return [
        'fit', '--config', 'bijie.yaml', '--data.init_args.root', str(root),
        '--data.init_args.tile_size', '64', '--data.init_args.batch_size', '2', '--data.init_args.num_workers', '0',
        '--trainer.accelerator', 'cpu', '--trainer.devices', '1', '--trainer.logger', 'false',
        '--trainer.enable_progress_bar', 'false', '--trainer.enable_model_summary', 'false',
        '--trainer.default_root_dir', str(tmp_path / 'runs'), '--trainer.fast_dev_run', 'true', *extra,
    ]  # fmt: skip


def test_feature_extraction_input_mistakes(tmp_path: Path) -> None:
    # a folder that does not exist, then a file in it that is not an image: both named on one line
    missing = tmp_path / 'no_such_folder'
    args = ['extract-features', '--encoder.variant', 'vit_tiny', '--encoder.input_size', 'null',
            '--output', str(tmp_path / 'feats')]  # fmt: skip
    assert_user_error(run_cli(*args, '--images', str(missing), cwd=tmp_path), str(missing), 'not a folder of images')
    folder = tmp_path / 'tiles'
    folder.mkdir()
    (folder / 'a.png').write_bytes(b'\x89PNG\r\n\x1a\n not really a png')
    with pytest.raises(SAMCFFNetError) as info:  # the same entry, in-process
        main([*args, '--images', str(folder)])
    assert str(folder / 'a.png') in str(info.value) and 'cannot read the image' in str(info.value)
    assert not (tmp_path / 'feats').exists()  # refused before any work


def test_bad_label_file_stops_fit_before_training(fake_roots: dict[str, Path], tmp_path: Path) -> None:
    # a 0/1 Bijie mask (the documented encoding is 0/255): caught at setup, named, nothing trained
    root = tmp_path / 'bijie'
    shutil.copytree(fake_roots['bijie'], root)
    mask = root / 'Bijie-landslide-dataset' / 'landslide' / 'mask' / 'df004.png'
    Image.fromarray((np.asarray(Image.open(mask)) > 0).astype(np.uint8)).save(mask)
    run = run_cli(*fit_args(root, tmp_path), *model_flags(TINY_SAM), cwd=tmp_path)
    line = assert_user_error(run, str(mask), 'label values {0, 1} (a 0/1 mask)', '{0, 255}')
    assert 'every pixel would be background' in line
    assert not list((tmp_path / 'runs').rglob('*.ckpt'))


def test_a_bug_shows_its_traceback(fake_roots: dict[str, Path], tmp_path: Path) -> None:
    # Attention U-Net on 16 px tiles in batches of one: its bottleneck is a 1 x 1 map, which BatchNorm refuses in
    # training with a ValueError. That is not a SAMCFFNetError, so it is reported as a bug: traceback, exit 1.
    args = fit_args(fake_roots['bijie'], tmp_path, '--config', 'models/attention_unet.yaml',
                    '--data.init_args.tile_size', '16', '--data.init_args.batch_size', '1')  # fmt: skip
    run = run_cli(*args, *model_flags({'base_channels': 8}), cwd=tmp_path)
    assert run.returncode == 1, run.stderr[-3000:]
    assert 'Traceback (most recent call last)' in run.stderr
    assert 'ValueError: Expected more than 1 value per channel when training' in run.stderr
    assert 'sam_cffnet: error:' not in run.stderr
