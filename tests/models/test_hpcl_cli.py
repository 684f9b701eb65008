"""HPCL-Net through the real command line (``sam_cffnet.cli.main``) on tiny synthetic Bijie data (RGB + DEM)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sam_cffnet.cli import main
from sam_cffnet.datasets.demo import make_demo_bijie
from sam_cffnet.tasks.segmentation import SegmentationTask


def tiny_args(tmp_path: Path, *extra: str) -> list[str]:
    """``fit`` with the shipped demo recipe shrunk to 64 px tiles, batch 2 and six synthetic chips in tmp_path."""
    make_demo_bijie(tmp_path / 'data', num_landslide=4, num_non_landslide=2, size_range=(64, 80))
    return [
        'fit', '--config', 'hpcl_demo.yaml',
        '--data.init_args.root', str(tmp_path / 'data'),
        '--data.init_args.num_landslide', '4', '--data.init_args.num_non_landslide', '2',
        '--data.init_args.tile_size', '64', '--data.init_args.batch_size', '2',
        '--model.model.dem_channels', '[8, 8, 8, 8]',
        '--model.model.samples_per_class', '4',
        '--model.model.queue_size', '8',
        '--model.num_figure_tiles', '0',
        '--trainer.logger', 'false', '--trainer.callbacks', '[]', '--trainer.enable_progress_bar', 'false',
        '--trainer.default_root_dir', str(tmp_path / 'runs'),
        *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ('fusion', 'extra'),
    [
        ('concat', []),
        ('gated', ['--model.model.hyperpixel_mode', 'superpixel',
                   '--model.model.num_superpixels', '16',
                   '--model.model.superpixel_resolution', '32']),
        ('none', ['--model.model.contrast_source', 'decoder']),
    ],
)  # fmt: skip
def test_fit_fast_dev_run_each_fusion_mode(tmp_path: Path, fusion: str, extra: list[str]) -> None:
    cli = main(tiny_args(tmp_path, '--trainer.fast_dev_run', 'true', '--model.model.fusion', fusion, *extra))
    model = cli.model.model
    assert model.fusion_mode == fusion
    assert model.input_keys == (('image',) if fusion == 'none' else ('image', 'dem'))
    assert int(model.queues.count.sum()) > 0  # the training step ran the contrastive part
    assert 'train_contrastive_loss' in cli.trainer.logged_metrics


def test_fit_writes_a_checkpoint_that_restores_queues_and_momentum(tmp_path: Path) -> None:
    cli = main(tiny_args(tmp_path, '--trainer.max_steps', '2', '--trainer.max_epochs', '1',
                         '--trainer.limit_val_batches', '1'))  # fmt: skip
    trained = cli.model.model
    last = tmp_path / 'runs' / 'checkpoints' / 'last.ckpt'
    assert last.is_file()
    loaded = SegmentationTask.from_checkpoint(last).model
    for key in ('queues.keys', 'queues.ptr', 'queues.count'):
        assert torch.equal(loaded.get_buffer(key), trained.get_buffer(key))
    assert int(loaded.queues.count.sum()) > 0
    for (name, p), q in zip(loaded.momentum.named_parameters(), trained.momentum.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert loaded.fusion_mode == 'gated' and loaded.contrastive_active
