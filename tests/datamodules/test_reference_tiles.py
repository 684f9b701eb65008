"""Tests for ReferenceTilesDataModule."""

from pathlib import Path

import pytest
import torch

from sam_cffnet.datamodules import ReferenceTilesDataModule


def test_test_equals_val_warns(reference_root: Path) -> None:
    dm = ReferenceTilesDataModule(reference_root, tile_size=32, batch_size=2)
    with pytest.warns(UserWarning, match='test == val'):
        dm.setup('fit')
    dm.setup('test')
    assert dm.test_dataset is dm.val_dataset and dm.split_info['test_split'] == 'val'
    assert len(dm.train_dataset) == 6 and len(dm.val_dataset) == 3
    b = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    raw = next(iter(dm.train_dataloader()))
    assert torch.allclose(b['image'], raw['image'] / 255)  # exactly the authors' ToTensor
    assert b['image'].shape == (2, 3, 32, 32) and b['mask'].shape == (2, 32, 32) and b['mask'].dtype == torch.int64


def test_holdout(reference_root: Path) -> None:
    dm = ReferenceTilesDataModule(reference_root, tile_size=32, holdout_ratio=0.34)
    dm.setup('fit')
    dm.setup('test')
    assert len(dm.test_dataset) == 2 and len(dm.train_dataset) == 4
    assert not set(dm.test_dataset.indices) & set(dm.train_dataset.indices)
    with pytest.raises(ValueError, match='holdout_ratio'):
        ReferenceTilesDataModule(reference_root, holdout_ratio=1.0)


def test_resize_to_tile(reference_root: Path) -> None:
    dm = ReferenceTilesDataModule(reference_root, tile_size=64, batch_size=2, holdout_ratio=0.2)
    dm.setup('fit')
    b = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert b['image'].shape == (2, 3, 64, 64) and set(b['mask'].unique().tolist()) <= {0, 1}
