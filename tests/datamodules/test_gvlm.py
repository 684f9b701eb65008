"""Tests for GVLMDataModule (site-level and tile-level splits)."""

import logging
from pathlib import Path

import pytest
import torch

from sam_cffnet.datamodules import GVLMDataModule


def _sites(ds: object) -> set[str]:
    return set(ds.tile_sites) if hasattr(ds, 'tile_sites') else {ds.dataset.tile_sites[i] for i in ds.indices}


def test_site_split(gvlm_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = GVLMDataModule(gvlm_root, tile_size=32, batch_size=2, stride=16)
    with caplog.at_level(logging.INFO):
        dm.setup('fit')
        dm.setup('test')
    assert 'GVLM split: by site (train sites:' in caplog.text
    train, val, test = (_sites(d) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset))
    assert not (train & val or train & test or val & test)
    assert len(train | val | test) == 5 and len(val) == 1 and len(test) == 1
    assert dm.split_info['split'] == 'site' and sorted(dm.split_info['test_sites']) == sorted(test)
    assert dm.train_dataset.stride == 16 and dm.val_dataset.stride == 32  # eval tiles never overlap
    b = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert b['image'].shape == (2, 3, 32, 32) and b['mask'].dtype == torch.int64
    assert 0 <= b['image'].min() and b['image'].max() <= 1
    dm2 = GVLMDataModule(gvlm_root, tile_size=32, stride=16)
    dm2.setup('fit')
    assert dm2.split_info['train_sites'] == dm.split_info['train_sites']
    seeds = {tuple(dm.split_info['test_sites'])}
    for seed in range(1, 6):
        d = GVLMDataModule(gvlm_root, tile_size=32, seed=seed)
        d.setup('fit')
        seeds.add(tuple(d.split_info['test_sites']))
    assert len(seeds) > 1


def test_explicit_sites(gvlm_root: Path) -> None:
    dm = GVLMDataModule(gvlm_root, tile_size=32, train_sites=['A Luoi_Vietnam', 'Shimen_China'],
                        val_sites=['Kupang_Indonesia'], test_sites=['Big Sur_United States'])  # fmt: skip
    dm.setup('fit')
    dm.setup('predict')
    assert _sites(dm.train_dataset) == {'A Luoi_Vietnam', 'Shimen_China'}
    assert _sites(dm.predict_dataset) == {'Big Sur_United States'}
    with pytest.raises(ValueError, match='together'):
        GVLMDataModule(gvlm_root, train_sites=['A Luoi_Vietnam'])
    with pytest.raises(ValueError, match='two splits'):
        GVLMDataModule(gvlm_root, train_sites=['x'], val_sites=['x'], test_sites=['y'])
    bad = GVLMDataModule(
        gvlm_root, train_sites=['Nowhere'], val_sites=['Shimen_China'], test_sites=['Kupang_Indonesia']
    )
    with pytest.raises(ValueError, match='Nowhere'):
        bad.setup('fit')


def test_tile_split(gvlm_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = GVLMDataModule(gvlm_root, tile_size=32, split_mode='tile', split_ratios=(0.6, 0.2, 0.2))
    with caplog.at_level(logging.INFO):
        dm.setup('fit')
        dm.setup('test')
    assert 'GVLM split: by tile' in caplog.text
    parts = [set(d.indices) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]
    total = len(dm.train_dataset.dataset)
    assert sum(len(p) for p in parts) == total and not (parts[0] & parts[1] or parts[0] & parts[2])
    assert abs(len(parts[0]) - 0.6 * total) <= 1
    dm2 = GVLMDataModule(gvlm_root, tile_size=32, split_mode='tile', split_ratios=(0.6, 0.2, 0.2))
    dm2.setup('fit')
    assert dm2.train_dataset.indices == dm.train_dataset.indices


def test_no_dem(gvlm_root: Path) -> None:
    from sam_cffnet.datamodules import LandslideDataModule
    from sam_cffnet.datasets import GVLM

    assert 'dem_mode' not in GVLMDataModule.__init__.__code__.co_varnames
    with pytest.raises(ValueError, match='no DEM'):
        LandslideDataModule(GVLM, str(gvlm_root), dem_mode='band')
    with pytest.raises(ValueError, match='split_mode'):
        GVLMDataModule(gvlm_root, split_mode='scene')  # type: ignore[arg-type]


def test_too_few_sites(generators: dict, tmp_path: Path) -> None:
    root = generators['gvlm'].make_gvlm(tmp_path, sites={'A_B': (40, 40), 'C_D': (40, 40)})
    with pytest.raises(ValueError, match='>= 3 sites'):
        GVLMDataModule(root, tile_size=32).setup('fit')


def test_cache_dir(gvlm_root: Path, tmp_path: Path) -> None:
    dm = GVLMDataModule(gvlm_root, tile_size=32, batch_size=2, cache_dir=str(tmp_path / 'c'))
    dm.setup('fit')
    assert len(list((tmp_path / 'c').glob('*/im.tif'))) == 5
    b = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert b['image'].shape == (2, 3, 32, 32)
