"""Tests for GVLMDataModule (site-level and tile-level splits)."""

import logging
from pathlib import Path

import numpy as np
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
    assert 'GVLM split: by tile' in caplog.text and 'no pixel is in two splits' in caplog.text
    parts = [set(d.indices) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]
    total = len(dm.train_dataset.dataset)
    assert sum(len(p) for p in parts) == total and not (parts[0] & parts[1] or parts[0] & parts[2])
    dm2 = GVLMDataModule(gvlm_root, tile_size=32, split_mode='tile', split_ratios=(0.6, 0.2, 0.2))
    dm2.setup('fit')
    assert dm2.train_dataset.indices == dm.train_dataset.indices
    other = GVLMDataModule(gvlm_root, tile_size=32, split_mode='tile', split_ratios=(0.6, 0.2, 0.2), seed=5)
    other.setup('fit')
    assert other.train_dataset.indices != dm.train_dataset.indices


def _owners(dm: GVLMDataModule) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per site: which split owns each scene pixel (bit mask: 1 train, 2 val, 4 test) and how many tiles cover it."""
    full = dm.train_dataset.dataset
    owner = {s: np.zeros(full.scene_shapes[s], np.int64) for s in full.sites}
    count = {s: np.zeros(full.scene_shapes[s], np.int64) for s in full.sites}
    t = dm.tile_size
    for bit, split in ((1, dm.train_dataset), (2, dm.val_dataset), (4, dm.test_dataset)):
        for i in split.indices:
            si, r, c = full.tiles[i]
            site = full.sites[si]
            owner[site][r : r + t, c : c + t] |= bit
            count[site][r : r + t, c : c + t] += 1
    return owner, count


@pytest.mark.parametrize('edge_tiles', ['group', 'drop'])
def test_tile_split_puts_no_pixel_in_two_splits(
    gvlm_root: Path, edge_tiles: str, caplog: pytest.LogCaptureFixture
) -> None:
    # the fake scenes (70 x 90, 96 x 50, 40 x 75, ...) are not multiples of 32: their last tiles are snapped back
    # to the scene border and overlap a neighbour, which a plain random tile split put into another split
    for seed in range(4):
        dm = GVLMDataModule(gvlm_root, tile_size=32, split_mode='tile', seed=seed, edge_tiles=edge_tiles,  # type: ignore[arg-type]
                            split_ratios=(0.4, 0.3, 0.3))  # fmt: skip
        with caplog.at_level(logging.INFO):
            dm.setup('fit')
            dm.setup('test')
        owner, count = _owners(dm)
        for site, bits in owner.items():
            assert not np.isin(bits, [3, 5, 6, 7]).any(), f'{site}: a pixel in two splits (seed {seed})'
            if edge_tiles == 'group':  # every pixel is used; overlaps only inside one split
                assert (bits > 0).all(), site
            else:  # tiles never overlap; only the border strips narrower than a tile are unused
                assert count[site].max() <= 1, site
        info = dm.split_info
        assert info['edge_tiles'] == edge_tiles and info['snapped_edge_tiles'] > 0
        full = dm.train_dataset.dataset
        used = sum(int((c > 0).sum()) for c in count.values())
        twice = sum(int((c > 1).sum()) for c in count.values())
        pixels = sum(h * w for h, w in full.scene_shapes.values())
        assert info['edge_pixels'] == (twice if edge_tiles == 'group' else pixels - used)
        assert f'{info["edge_pixels"]:,} scene pixels' in caplog.text
    if edge_tiles == 'drop':
        assert (
            sum(len(d) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset))
            == len(full) - info['snapped_edge_tiles']
        )


def test_tile_split_with_no_test_ratio_tests_on_val(gvlm_root: Path) -> None:
    """The authors' GVLM split: 1977 train / 710 val tiles and no test; the paper reports val."""
    dm = GVLMDataModule(gvlm_root, tile_size=32, split_mode='tile', split_ratios=(0.7357, 0.2643, 0.0))
    with pytest.warns(UserWarning, match='test == val'):
        dm.setup('fit')
    dm.setup('test')
    assert dm.test_dataset is dm.val_dataset and dm.split_info['test_split'] == 'val'
    assert len(dm.train_dataset) > len(dm.val_dataset) > 0


def test_bad_settings_are_config_errors(gvlm_root: Path) -> None:
    from sam_cffnet.errors import ConfigError

    with pytest.raises(ConfigError, match='edge_tiles'):
        GVLMDataModule(gvlm_root, split_mode='tile', edge_tiles='pad')  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match='split_mode'):
        GVLMDataModule(gvlm_root, split_mode='scene')  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match='split_ratios'):
        GVLMDataModule(gvlm_root, split_ratios=(0.5, 0.5))  # type: ignore[arg-type]


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
