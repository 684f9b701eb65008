"""Tests for Landslide4SenseDataModule."""

import logging
from pathlib import Path

import pytest
import torch

from sam_cffnet.datamodules import Landslide4SenseDataModule

REAL = Path(__file__).resolve().parents[2] / '..' / 'shared' / 'data' / 'real' / 'landslide4sense'


def _batch(dm: Landslide4SenseDataModule, split: str = 'train') -> dict[str, torch.Tensor]:
    return dm.on_after_batch_transfer(next(iter(getattr(dm, f'{split}_dataloader')())), 0)


def test_official_and_held_out_splits(l4s_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = Landslide4SenseDataModule(l4s_root, tile_size=32, batch_size=2, test_ratio=0.2)
    with caplog.at_level(logging.INFO):
        dm.setup('fit')
        dm.setup('test')
        dm.setup('predict')
    # ValidData has masks -> official val; TestData has none -> 20% of TrainData held out for test
    assert len(dm.val_dataset) == 3 and dm.val_dataset.split == 'val'
    assert len(dm.test_dataset) == 2 and len(dm.train_dataset) == 8
    assert not set(dm.train_dataset.indices) & set(dm.test_dataset.indices)
    assert len(dm.predict_dataset) == 2 and not dm.predict_dataset.has_masks
    assert 'official ValidData' in caplog.text and 'TrainData patches held out' in caplog.text
    dm2 = Landslide4SenseDataModule(l4s_root, tile_size=32, test_ratio=0.2)
    dm2.setup('fit')
    assert dm2.train_dataset.indices == dm.train_dataset.indices


def test_all_held_out_when_no_official_masks(generators: dict, tmp_path: Path) -> None:
    root = generators['landslide4sense'].make_l4s(tmp_path, n_train=20, val_masks=False, test_masks=False)
    dm = Landslide4SenseDataModule(root, tile_size=32, val_ratio=0.2, test_ratio=0.1, seed=5)
    dm.setup('fit')
    dm.setup('test')
    parts = [set(d.indices) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]
    assert [len(p) for p in parts] == [14, 4, 2]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_batches(l4s_root: Path) -> None:
    dm = Landslide4SenseDataModule(l4s_root, tile_size=32, batch_size=2)
    dm.setup('fit')
    b = _batch(dm)
    assert b['image'].shape == (2, 3, 32, 32) and b['image'].dtype == torch.float32
    assert b['mask'].shape == (2, 32, 32) and b['mask'].dtype == torch.int64
    assert 0 <= b['image'].min() and b['image'].max() <= 1
    raw = next(iter(dm.train_dataloader()))
    assert raw['image'].shape[-1] == 16  # patches are resized on the device, after transfer
    # reference normalization = clip(img / 10 * 255, 0, 255) / 255
    expected = torch.clamp(raw['image'] / 10 * 255, 0, 255) / 255
    out = dm.on_after_batch_transfer({'image': raw['image'], 'mask': raw['mask']}, 0)
    expected = torch.nn.functional.interpolate(expected, size=(32, 32), mode='bilinear', align_corners=False)
    assert torch.allclose(out['image'], expected, atol=1e-5)


def test_predict_split_without_masks(l4s_root: Path) -> None:
    dm = Landslide4SenseDataModule(l4s_root, tile_size=32, batch_size=2)
    dm.setup('predict')
    b = _batch(dm, 'predict')
    assert set(b) == {'image'} and b['image'].shape == (2, 3, 32, 32)


def test_bands_and_dem(l4s_root: Path) -> None:
    dm = Landslide4SenseDataModule(l4s_root, bands='all', tile_size=16, normalization='dataset', batch_size=2)
    dm.setup('fit')
    assert dm.num_channels == 14 and _batch(dm)['image'].shape == (2, 14, 16, 16)
    cfg = dm.preprocessing.to_dict()
    assert cfg['band_indices'] == list(range(14)) and len(cfg['mean']) == 14 and cfg['normalization'] == 'dataset'
    dm = Landslide4SenseDataModule(l4s_root, bands=['B8', 'B4'], dem_mode='separate', tile_size=16, batch_size=2)
    dm.setup('fit')
    b = _batch(dm)
    assert b['image'].shape == (2, 2, 16, 16) and b['dem'].shape == (2, 2, 16, 16)
    assert dm.preprocessing.to_dict()['band_indices'] == [7, 3]
    assert dm.preprocessing.to_dict()['dem_bands'] == ['slope', 'dem']
    dm = Landslide4SenseDataModule(l4s_root, dem_mode='band', tile_size=16, batch_size=2)
    dm.setup('fit')
    assert dm.num_channels == 5 and _batch(dm)['image'].shape[1] == 5
    with pytest.raises(ValueError, match='remove them'):
        Landslide4SenseDataModule(l4s_root, bands='all', dem_mode='separate')


def test_missing_train_masks(generators: dict, tmp_path: Path) -> None:
    from torchgeo.datasets import DatasetNotFoundError

    root = generators['landslide4sense'].make_l4s(tmp_path, n_train=2)
    import shutil

    shutil.rmtree(root / 'TrainData' / 'mask')
    dm = Landslide4SenseDataModule(root, tile_size=16)
    with pytest.raises(DatasetNotFoundError, match='has no masks'):
        dm.setup('fit')


@pytest.mark.skipif(not REAL.is_dir(), reason='real L4S samples not available')
def test_real_prediction_only_root() -> None:
    from torchgeo.datasets import DatasetNotFoundError

    dm = Landslide4SenseDataModule(REAL, batch_size=4)
    dm.setup('predict')
    b = _batch(dm, 'predict')
    assert set(b) == {'image'} and b['image'].shape == (4, 3, 256, 256)
    assert 0 <= b['image'].min() and b['image'].max() <= 1 and b['image'].std() > 0.01
    with pytest.raises(DatasetNotFoundError, match='TrainData'):
        dm.setup('fit')
