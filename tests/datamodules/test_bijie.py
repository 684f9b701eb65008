"""Tests for BijieDataModule."""

import json
import logging
from pathlib import Path

import pytest
import torch

from sam_cffnet.datamodules import BijieDataModule

REAL = Path(__file__).resolve().parents[2] / '..' / 'shared' / 'data' / 'real' / 'bijie'


def _batch(dm: BijieDataModule, split: str = 'train') -> dict[str, torch.Tensor]:
    loader = getattr(dm, f'{split}_dataloader')()
    return dm.on_after_batch_transfer(next(iter(loader)), 0)


@pytest.mark.parametrize('chip_mode', ['resize', 'pad'])
def test_batches(bijie_root: Path, chip_mode: str) -> None:
    dm = BijieDataModule(bijie_root, tile_size=32, chip_mode=chip_mode, batch_size=3)  # type: ignore[arg-type]
    dm.setup('fit')
    b = _batch(dm)
    assert b['image'].shape == (3, 3, 32, 32) and b['image'].dtype == torch.float32
    assert b['mask'].shape == (3, 32, 32) and b['mask'].dtype == torch.int64
    assert 0 <= b['image'].min() and b['image'].max() <= 1  # reference: /255
    assert set(b['mask'].unique().tolist()) <= {0, 1}
    assert dm.num_channels == 3


def test_split_sizes_no_overlap_determinism(bijie_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = BijieDataModule(bijie_root, tile_size=32, split_ratios=(0.6, 0.2, 0.2), seed=1)
    with caplog.at_level(logging.INFO):
        dm.setup('fit')
        dm.setup('test')
    assert 'Bijie split' in caplog.text and 'test split = test' in caplog.text
    chips = [set(t[0] for t in d.tiles) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]
    assert sum(len(c) for c in chips) == 10
    assert not (chips[0] & chips[1] or chips[0] & chips[2] or chips[1] & chips[2])
    landslide = dm.dataset_full.is_landslide
    assert sum(landslide[i] for i in chips[0]) == 4  # stratified: 60% of the 6 landslide chips
    dm2 = BijieDataModule(bijie_root, tile_size=32, split_ratios=(0.6, 0.2, 0.2), seed=1)
    dm2.setup('fit')
    assert dm2.train_dataset.tiles == dm.train_dataset.tiles
    order1 = [b['image'].sum().item() for b in dm.train_dataloader()]
    order2 = [b['image'].sum().item() for b in dm2.train_dataloader()]
    assert order1 == order2  # seeded shuffling
    dm3 = BijieDataModule(bijie_root, tile_size=32, split_ratios=(0.6, 0.2, 0.2), seed=2)
    dm3.setup('fit')
    assert dm3.train_dataset.tiles != dm.train_dataset.tiles


def test_pad_mode_tiles(bijie_root: Path) -> None:
    dm = BijieDataModule(bijie_root, tile_size=16, stride=8, chip_mode='pad', split_ratios=(1, 0, 0))
    dm.setup('fit')
    ds = dm.train_dataset
    assert len(ds) > 10
    s = ds[0]
    assert s['image'].shape == (3, 16, 16) and s['mask'].shape == (16, 16)


def test_normalization_modes(bijie_root: Path) -> None:
    raw = BijieDataModule(bijie_root, tile_size=32, normalization='none')
    raw.setup('fit')
    batch = next(iter(raw.train_dataloader()))
    x = raw.on_after_batch_transfer(batch, 0)['image']
    assert x.max() > 1.5  # raw 0..255
    dm = BijieDataModule(bijie_root, tile_size=32, normalization='dataset')
    mean = torch.tensor([75.94, 94.34, 80.46]).view(1, 3, 1, 1)
    std = torch.tensor([38.77, 35.05, 33.51]).view(1, 3, 1, 1)
    assert torch.allclose(dm.on_after_batch_transfer(batch, 0)['image'], (x - mean) / std, atol=1e-5)
    cfg = dm.preprocessing.to_dict()
    assert cfg['mean'] == [75.94, 94.34, 80.46] and 'Bijie' in cfg['stats_source']
    dm = BijieDataModule(bijie_root, tile_size=32, normalization='dataset', mean=[0, 0, 0], std=[255, 255, 255])
    assert torch.allclose(dm.on_after_batch_transfer(batch, 0)['image'], x / 255)
    ref = BijieDataModule(bijie_root).preprocessing.to_dict()
    assert ref['scale'] == [1 / 255] * 3 and ref['mean'] == [0.0] * 3 and ref['std'] == [1.0] * 3
    assert ref['tile_size'] == 256 and ref['dataset'] == 'bijie'
    json.dumps(ref)


@pytest.mark.parametrize(('dem_mode', 'channels'), [('none', 3), ('band', 4), ('separate', 3)])
def test_dem_modes(bijie_root: Path, dem_mode: str, channels: int) -> None:
    dm = BijieDataModule(bijie_root, tile_size=32, batch_size=2, dem_mode=dem_mode)  # type: ignore[arg-type]
    dm.setup('fit')
    b = _batch(dm)
    assert dm.num_channels == channels and b['image'].shape[1] == channels
    assert ('dem' in b) == (dem_mode == 'separate')
    if dem_mode == 'separate':
        assert b['dem'].shape == (2, 1, 32, 32) and b['dem'].dtype == torch.float32
        assert b['dem'].mean().abs() < 1e-4  # per-tile z-score
    if dem_mode == 'band':
        assert b['image'][:, :3].max() <= 1 and b['image'][:, 3].std() > 0.5
    assert dm.preprocessing.to_dict()['dem_normalization'] == ('none' if dem_mode == 'none' else 'per_tile_zscore')


def test_predict_and_test(bijie_root: Path) -> None:
    dm = BijieDataModule(bijie_root, tile_size=32, batch_size=2)
    dm.setup('test')
    dm.setup('predict')
    assert len(dm.test_dataset) == len(dm.predict_dataset) > 0
    assert _batch(dm, 'predict')['image'].shape[1:] == (3, 32, 32)


def test_setup_errors_early(tmp_path: Path) -> None:
    from torchgeo.datasets import DatasetNotFoundError

    dm = BijieDataModule(tmp_path / 'missing')
    with pytest.raises(DatasetNotFoundError, match='missing'):
        dm.setup('fit')


def test_plot(bijie_root: Path) -> None:
    dm = BijieDataModule(bijie_root, tile_size=32)
    dm.setup('fit')
    assert dm.plot(dm.val_dataset[0]) is not None


@pytest.mark.skipif(not REAL.is_dir(), reason='real Bijie samples not available')
def test_real_samples() -> None:
    dm = BijieDataModule(REAL, tile_size=256, batch_size=2, split_ratios=(0.6, 0.2, 0.2))
    dm.setup('fit')
    b = _batch(dm, 'val')
    assert b['image'].shape == (2, 3, 256, 256) and 0 <= b['image'].min() and b['image'].max() <= 1
    assert b['mask'].dtype == torch.int64


def test_translandseg_split_is_the_authors_formula() -> None:
    """TransLandSeg train.py:42-50: ``np.random.seed(42); np.random.shuffle(indices)``, val = first floor(0.3 n) + 1."""
    import numpy as np

    from sam_cffnet.datamodules.bijie import translandseg_split

    for n in (770, 23, 6):
        indices = list(range(n))
        state = np.random.get_state()
        np.random.seed(42)
        np.random.shuffle(indices)
        np.random.set_state(state)
        split = int(np.floor(0.3 * n)) + 1
        assert translandseg_split(n, 0.3, 42) == (indices[split:], indices[:split])
    train, val = translandseg_split(770)
    assert len(val) == 232 and len(train) == 538 and not set(train) & set(val)
    assert translandseg_split(770, seed=0) != (train, val)


def test_translandseg_split_mode(bijie_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = BijieDataModule(bijie_root, tile_size=32, split_mode='translandseg', split_ratios=(0.7, 0.3, 0.0), seed=42)
    with caplog.at_level(logging.INFO), pytest.warns(UserWarning, match='test == val'):
        dm.setup('fit')
    dm.setup('test')
    assert 'TransLandSeg (train.py): landslide chips only (6 of 10)' in caplog.text
    files = dm.dataset_full.files
    train = [files[c]['image'].name for c, _, _ in dm.train_dataset.tiles]
    val = [files[c]['image'].name for c, _, _ in dm.val_dataset.tiles]
    assert len(val) == 2 and len(train) == 4  # floor(0.3 * 6) + 1
    assert all(files[c]['landslide'] for c, _, _ in dm.train_dataset.tiles + dm.val_dataset.tiles)
    assert train == sorted(train) and val == sorted(val)  # file order within each split
    assert dm.test_dataset is dm.val_dataset and dm.split_info['test_split'] == 'val'


def test_zero_test_ratio_tests_on_val(bijie_root: Path) -> None:
    dm = BijieDataModule(bijie_root, tile_size=32, split_ratios=(0.7, 0.3, 0.0))
    with pytest.warns(UserWarning, match='test == val'):
        dm.setup('fit')
    dm.setup('test')
    assert dm.test_dataset is dm.val_dataset and len(dm.val_dataset) > 0


def test_split_settings_are_checked(bijie_root: Path) -> None:
    from sam_cffnet.errors import ConfigError

    with pytest.raises(ConfigError, match='no test split'):
        BijieDataModule(bijie_root, split_mode='translandseg', split_ratios=(0.7, 0.2, 0.1))
    with pytest.raises(ConfigError, match='split_mode'):
        BijieDataModule(bijie_root, split_mode='random')  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match='three ratios'):
        BijieDataModule(bijie_root, split_ratios=(0.7, 0.3))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match='three ratios'):
        BijieDataModule(bijie_root, split_ratios=(0.7, -0.3, 0.6))
