"""Tests for InventoryDataModule: batch contract, leakage-free spatial splits, nodata, negative ratio, normalization."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import shapely
import torch
from conftest import load_fake_data_generator
from torch import nn

from sam_cffnet.datamodules import InventoryDataModule
from sam_cffnet.errors import ConfigError, DataError
from sam_cffnet.preprocessing import Preprocessing


@pytest.fixture(scope='module')
def gen() -> ModuleType:
    return load_fake_data_generator('inventory')


@pytest.fixture(scope='module')
def inventory(gen: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return gen.make_inventory(tmp_path_factory.mktemp('inventory'), scenes=2, size=256, dem=True)


def make(inventory: dict[str, Any], tmp_path: Path, **kwargs: Any) -> InventoryDataModule:
    args: dict[str, Any] = {'images': inventory['images'], 'labels': inventory['labels'], 'tile_size': 64,
                            'block_size': 128, 'split_ratios': (0.6, 0.2, 0.2), 'batch_size': 4,
                            'cache_dir': str(tmp_path / 'cache'), 'progress': False}  # fmt: skip
    args.update(kwargs)
    return InventoryDataModule(**args)


def tile_boxes(dm: InventoryDataModule, split: str) -> list[Any]:
    tiles = dm.tiles[split]
    return [shapely.box(*tiles.bounds(i)) for i in range(len(tiles))]


def test_batch_contract_and_preprocessing(inventory: dict[str, Any], tmp_path: Path) -> None:
    dm = make(inventory, tmp_path, dem=inventory['dem'], dem_mode='separate')
    assert dm.num_channels == 3
    dm.setup('fit')
    raw = next(iter(dm.train_dataloader()))
    assert set(raw) == {'image', 'mask', 'dem'}
    batch = dm.on_after_batch_transfer(raw, 0)
    assert batch['image'].shape == (4, 3, 64, 64) and batch['image'].dtype == torch.float32
    assert 0 <= batch['image'].min() and batch['image'].max() <= 1  # reference: uint8 / 255
    assert batch['mask'].shape == (4, 64, 64) and batch['mask'].dtype == torch.int64
    assert set(batch['mask'].unique().tolist()) <= {0, 1}
    assert batch['dem'].shape == (4, 1, 64, 64) and abs(float(batch['dem'].mean())) < 1e-3  # per-tile z-score
    pre = dm.preprocessing
    assert pre.bands == ('red', 'green', 'blue') and pre.all_bands == ('red', 'green', 'blue')
    assert pre.dem_mode == 'separate' and pre.dataset == 'inventory' and pre.tile_size == 64
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    val = next(iter(dm.val_dataloader()))
    assert val['image'].shape[1:] == (3, 64, 64)
    band = make(inventory, tmp_path, dem=inventory['dem'], dem_mode='band')
    assert band.num_channels == 4
    band.setup('fit')
    assert band.on_after_batch_transfer(next(iter(band.train_dataloader())), 0)['image'].shape == (4, 4, 64, 64)


def test_band_selection_feeds_map(gen: ModuleType, tmp_path: Path) -> None:
    inv = gen.make_inventory(tmp_path / 'data', size=192)
    dm = make(inv, tmp_path, band_names=['r', 'g', 'b'], bands=['b', 'r'])
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    tiles = dm.tiles['train']
    sample = tiles[0]
    assert sample['image'].shape == (2, 64, 64) and batch['image'].shape[1] == 2
    everything = make(inv, tmp_path, band_names=['r', 'g', 'b'])
    everything.setup('fit')
    assert torch.equal(sample['image'], everything.tiles['train'][0]['image'][[2, 0]])
    pre = dm.preprocessing
    assert pre.bands == ('b', 'r') and pre.band_indices == (2, 0) and pre.all_bands == ('r', 'g', 'b')
    # map reads a 3-band scene through the same selection
    spectral, dem = pre.raster_band_indexes(3, 'new_scene.tif')
    assert spectral == [3, 1] and dem == []


def test_splits_are_spatially_disjoint_seeded_and_logged(
    inventory: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dm = make(inventory, tmp_path, seed=3)
    with caplog.at_level(logging.INFO):
        dm.setup('fit')
    boxes = {s: tile_boxes(dm, s) for s in ('train', 'val', 'test')}
    assert all(boxes[s] for s in boxes)
    for a, b in (('train', 'val'), ('train', 'test'), ('val', 'test')):
        ua, ub = shapely.union_all(boxes[a]), shapely.union_all(boxes[b])
        assert ua.intersection(ub).area == 0, f'{a} and {b} share pixels'
    # every tile lies inside the cells of its own split
    cell = dm.inventory.cell
    for s, name in enumerate(('train', 'val', 'test')):
        for r, c in dm.tiles[name].positions // cell:
            assert (dm.split_cells[r : r + 64 // cell, c : c + 64 // cell] == s).all()
    # eval tiles never overlap each other; training positions do (stride 16)
    assert shapely.union_all(boxes['val']).area == pytest.approx(sum(b.area for b in boxes['val']))
    assert dm.stride == 16 and len(boxes['train']) > shapely.union_all(boxes['train']).area / boxes['train'][0].area
    areas = dm.split_info['areas']
    assert sum(areas[s]['area_km2'] for s in areas) + dm.split_info['unused_km2'] == pytest.approx(
        dm.split_info['area_with_data_km2']
    )
    for s in ('train', 'val', 'test'):
        assert f'{s:<5} {areas[s]["area_km2"]:.4f} km²' in caplog.text
    assert 'inventory split by blocks of 128 px (256 m)' in caplog.text and 'seed 3' in caplog.text
    assert Path(dm.split_info['split_plot']).is_file()
    again = make(inventory, tmp_path, seed=3)
    again.setup('fit')
    assert np.array_equal(again.split_cells, dm.split_cells)
    others = set()
    for seed in (4, 5, 6):
        d = make(inventory, tmp_path, seed=seed)
        d.setup('fit')
        others.add(d.split_cells.tobytes())
    assert any(o != dm.split_cells.tobytes() for o in others)  # the seed decides the blocks' splits


def test_nodata_never_reaches_a_tile(inventory: dict[str, Any], tmp_path: Path) -> None:
    dm = make(inventory, tmp_path)  # scene 0 has nodata 0 in its top-left triangle
    dm.setup('fit')
    seen = 0
    for name in ('train', 'val', 'test'):
        tiles = dm.tiles[name]
        for i in range(len(tiles)):
            image = tiles[i]['image']
            assert (image.amax(0) > 0).all(), f'{name} tile {i} holds nodata'
            seen += 1
    assert seen > 50
    lenient = make(inventory, tmp_path, min_valid_fraction=0.5)
    lenient.setup('fit')
    splits = ('train', 'val', 'test')
    assert sum(len(lenient.tiles[s]) for s in splits) > sum(len(dm.tiles[s]) for s in splits)
    holes = [bool((t[i]['image'].amax(0) == 0).any()) for t in lenient.tiles.values() for i in range(len(t))]
    assert any(holes)  # the check above can fail: a lenient setting lets nodata in


def test_negative_ratio_of_training_epochs(inventory: dict[str, Any], tmp_path: Path) -> None:
    dm = make(inventory, tmp_path, negative_ratio=0.25, samples_per_epoch=24, batch_size=8)
    dm.setup('fit')
    loader = dm.train_dataloader()
    masks = torch.cat([b['mask'] for b in loader])
    assert masks.shape[0] == 24
    empty = int((masks.flatten(1).sum(1) == 0).sum())
    assert empty == 6  # round(24 * 0.25) landslide-free tiles, the rest hold landslides
    loader.sampler.set_epoch(1)
    other = torch.cat([b['mask'] for b in loader])
    assert not torch.equal(other, masks) and int((other.flatten(1).sum(1) == 0).sum()) == 6
    none = make(inventory, tmp_path, negative_ratio=0.0, samples_per_epoch=16)
    none.setup('fit')
    assert all(int(b['mask'].flatten(1).sum(1).min()) > 0 for b in none.train_dataloader())


def test_split_regions_and_gap(gen: ModuleType, inventory: dict[str, Any], tmp_path: Path) -> None:
    x0, y1 = 500_000.0, 3_000_000.0  # the two scenes span 1024 m x 512 m
    edges = [0.0, 384.0, 768.0, 1024.0]
    regions = [shapely.box(x0 + a, y1 - 512, x0 + b, y1) for a, b in itertools.pairwise(edges)]
    path = gen.write_vector(tmp_path / 'regions.gpkg', regions, 'EPSG:32648', fold=['train', 'val', 'test'])
    dm = make(inventory, tmp_path, split='regions', split_regions=str(path), split_attribute='fold', stride=32)
    dm.setup('fit')
    for name, region in zip(('train', 'val', 'test'), regions, strict=True):
        assert all(b.within(region) for b in tile_boxes(dm, name)) and tile_boxes(dm, name)
    gap = make(inventory, tmp_path, split='regions', split_regions=str(path), split_attribute='fold', split_gap=64)
    gap.setup('fit')
    train = shapely.union_all(tile_boxes(gap, 'train'))
    for name in ('val', 'test'):
        assert shapely.union_all(tile_boxes(gap, name)).distance(train) >= 64 * 2.0 - 1e-6
    overlapping = gen.write_vector(tmp_path / 'overlap.gpkg', [regions[0], regions[0].buffer(10)], 'EPSG:32648',
                                   split=['train', 'test'])  # fmt: skip
    with pytest.raises(DataError, match='the train and test regions overlap'):
        make(inventory, tmp_path, split='regions', split_regions=str(overlapping)).setup('fit')
    with pytest.raises(DataError, match="no column 'split'"):
        make(inventory, tmp_path, split='regions', split_regions=str(path)).setup('fit')


def test_dataset_normalization_from_training_tiles(inventory: dict[str, Any], tmp_path: Path) -> None:
    dm = make(inventory, tmp_path, normalization='dataset', stats_tiles=16)
    dm.setup('fit')
    pre = dm.preprocessing
    assert pre.normalization == 'dataset' and 'computed at setup from 16 training tiles' in pre.stats_source
    images = torch.cat([dm.on_after_batch_transfer(b, 0)['image'] for b in dm.train_dataloader()])
    per_band = images.transpose(0, 1).flatten(1)
    assert per_band.mean(1).abs().max() < 0.35 and ((per_band.std(1) - 1).abs() < 0.35).all()
    given = make(inventory, tmp_path, normalization='dataset', mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0])
    given.setup('fit')
    assert given.preprocessing.mean == (1.0, 2.0, 3.0) and given.preprocessing.stats_source == 'given in the config'


def test_works_in_a_plain_lightning_project(inventory: dict[str, Any], tmp_path: Path) -> None:
    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Conv2d(3, 1, 1)

        def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
            assert batch['image'].shape[1:] == (3, 64, 64) and batch['mask'].dtype == torch.int64
            logits = self.head(batch['image'])[:, 0]
            return nn.functional.binary_cross_entropy_with_logits(logits, batch['mask'].float())

        def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
            self.log('val_loss', self.training_step(batch, batch_idx))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = make(inventory, tmp_path, num_workers=1, augment=True)
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(Tiny(), datamodule=dm)
    assert trainer.state.finished and trainer.current_epoch == 2


def test_bad_settings_fail_before_work(gen: ModuleType, inventory: dict[str, Any], tmp_path: Path) -> None:
    """Settings and file headers are checked on first use (``check``, ``num_channels``, ``setup``), before any work."""
    with pytest.raises(ConfigError, match=r'stride \(24\) must divide tile_size \(64\)'):
        make(inventory, tmp_path, stride=24).num_channels  # noqa: B018
    with pytest.raises(ConfigError, match='block_size'):
        make(inventory, tmp_path, block_size=100).check()
    with pytest.raises(ConfigError, match=r'needs data\.init_args\.dem'):
        make(inventory, tmp_path, dem_mode='band').check()
    with pytest.raises(ConfigError, match=r"bands: \['nir'\] not among the imagery bands"):
        make(inventory, tmp_path, bands=['nir']).check()
    with pytest.raises(ConfigError, match='negative_ratio'):
        make(inventory, tmp_path, negative_ratio=1.5).check()
    with pytest.raises(ConfigError, match='split_regions'):
        make(inventory, tmp_path, split='regions').check()
    u16 = gen.write_geotiff(tmp_path / 'u16.tif', np.ones((3, 64, 64), np.uint16), gen.scene_transform(0, 64, 2.0))
    with pytest.raises(ConfigError, match=r'imagery is uint16.*scale'):
        make(inventory, tmp_path, images=str(u16)).check()
    assert make(inventory, tmp_path, images=str(u16), scale=1e-4).preprocessing.scale == (1e-4,) * 3
    few = make(inventory, tmp_path, block_size=512)
    with pytest.raises(ConfigError, match=r'only 1 block\(s\) of 512 px hold data, fewer than the 3 splits'):
        few.setup('fit')
    empty_test = make(inventory, tmp_path, split_ratios=(0.8, 0.2, 0.0))
    empty_test.setup('fit')
    with pytest.raises(ConfigError, match='the test split holds no tile'):
        empty_test.setup('test')
