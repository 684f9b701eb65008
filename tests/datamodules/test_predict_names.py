"""``predict`` names its outputs after the source image, at the image's own size (through the CLI, fake Bijie)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import model_flags
from PIL import Image
from test_user_errors import run_cli

from sam_cffnet.cli import main
from sam_cffnet.errors import OutputExistsError

TINY = {'variant': 'vit_tiny', 'input_size': None, 'sam_checkpoint': None, 'decoder_channels': 64}


def predict_args(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        'predict', '--config', 'bijie.yaml', '--data.init_args.root', str(root), '--data.init_args.tile_size', '32',
        '--data.init_args.batch_size', '2', '--data.init_args.num_workers', '0',
        '--data.init_args.split_ratios', '[0.4, 0.2, 0.4]', '--trainer.accelerator', 'cpu',
        '--trainer.devices', '1', '--trainer.logger', 'false', '--trainer.enable_progress_bar', 'false',
        '--prediction_writer.output_dir', str(out), *model_flags(TINY), *extra,
    ]  # fmt: skip


def chip_sizes(root: Path) -> dict[str, tuple[int, int]]:
    """Every chip's name -> (width, height), as PIL reports it."""
    return {p.stem: Image.open(p).size for p in root.rglob('image/*.png')}


@pytest.mark.parametrize('chip_mode', ['resize', 'pad'])
def test_predict_writes_one_file_per_chip_at_its_size(
    chip_mode: str, fake_roots: dict[str, Path], tmp_path: Path
) -> None:
    root, out = fake_roots['bijie'], tmp_path / 'predictions'
    run = run_cli(*predict_args(root, out, '--data.init_args.chip_mode', chip_mode), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    sizes = chip_sizes(root)
    masks = sorted(out.glob('*_mask.png'))
    assert masks and not list(out.glob('tile_*'))
    names = [p.name[: -len('_mask.png')] for p in masks]
    assert set(names) <= set(sizes) and len(names) == len(set(names))
    for name in names:
        mask, probability = Image.open(out / f'{name}_mask.png'), Image.open(out / f'{name}_probability.png')
        assert mask.size == probability.size == sizes[name], name  # the chip's own size, not the tile's
        assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 255}
    if chip_mode == 'pad':  # chips larger than a 32 px tile are put together from several windows
        assert any(w > 32 or h > 32 for w, h in (sizes[n] for n in names))
    # a second run into the same folder is refused (the same entry, in-process; the one-line exit-2 report of such
    # errors is tested through the command line in test_cli.py), nothing rewritten
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(OutputExistsError, match='already holds predictions') as info:
        main(predict_args(root, out, '--data.init_args.chip_mode', chip_mode))
    assert str(out) in str(info.value)
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
