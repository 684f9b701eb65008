"""``extract-features`` from the command line: its ``--images`` encoder options are SAMEncoder's own (defaults
included), the pixels are scaled by the training pipeline, and every mistake is one line, exit 2, before any work."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_user_errors import assert_user_error, run_cli

from sam_cffnet.cli import main
from sam_cffnet.errors import ConfigError
from sam_cffnet.features import FeatureCache
from sam_cffnet.models.encoders.sam import SAMEncoder

TINY = ['--encoder.variant', 'vit_tiny', '--encoder.input_size', 'null']


def _images(folder: Path, bands: int = 3) -> Path:
    folder.mkdir()
    for i in range(2):
        pixels = np.full((32, 32, bands), 60 * i + 20, np.uint8)
        Image.fromarray(pixels if bands > 1 else pixels[..., 0]).save(folder / f't{i}.png')
    return folder


def test_images_take_every_encoder_option_with_its_defaults(tmp_path: Path) -> None:
    images = _images(tmp_path / 'tiles')
    help_text = run_cli('extract-features', '--help', cwd=tmp_path)
    assert help_text.returncode == 0, help_text.stderr[-3000:]
    for name in SAMEncoder(variant='vit_tiny', input_size=None).options:
        if name != 'in_channels':  # from the images
            assert f'--encoder.{name}' in help_text.stdout, name

    encoder = SAMEncoder(variant='vit_tiny', input_size=None)
    torch.save({f'image_encoder.{k}': v for k, v in encoder.vit.state_dict().items()}, tmp_path / 'sam_tiny.pth')
    run = run_cli('extract-features', '--images', str(images), *TINY, '--encoder.sam_checkpoint', 'sam_tiny.pth',
                  '--encoder.channels_last', 'true', '--output', 'out', '--device', 'cpu', cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    (made,) = (tmp_path / 'out').glob('folder-*')
    cache = FeatureCache(made)
    key = cache.key['encoder']
    assert key['channels_last'] is True
    assert key['attention'] == inspect.signature(SAMEncoder).parameters['attention'].default  # the encoder's default
    # the pixels reach the encoder as training feeds them (8-bit / 255)
    assert cache.key['encoder']['fingerprint'] == encoder.fingerprint()
    with torch.no_grad():
        expected = encoder(torch.full((1, 3, 32, 32), 80 / 255)).features
    assert torch.allclose(cache.features(1)[3].float(), expected[3][0], atol=2e-2)


def test_mistakes_are_one_line_before_any_work(tmp_path: Path) -> None:
    images = _images(tmp_path / 'tiles')
    out = ['--output', str(tmp_path / 'out')]
    cases = {
        'encoder.variant': ['--images', str(images), '--encoder.variant', 'vit_x', *out],
        'batch_size': ['--images', str(images), *TINY, '--batch-size', 'many', *out],
        'either --config': ['--images', str(images), '--config', 'demo.yaml', *out],
        'for --images only': ['--config', 'demo.yaml', *TINY, *out],
        'unknown arguments': ['--images', str(images), *TINY, '--model.init_args.lr', '1', *out],
    }
    # one through the command line (exit 2, one line, no traceback); the others through the same entry in-process
    first, *rest = cases.items()
    assert_user_error(run_cli('extract-features', *first[1], cwd=tmp_path), first[0])
    for named, args in rest:
        with pytest.raises(ConfigError) as info:
            main(['extract-features', *args])
        assert named in str(info.value) and '\n' not in str(info.value), (named, str(info.value))
    assert not (tmp_path / 'out').exists()
