"""``datamodule.mean`` / ``datamodule.std`` hold one value per channel of a real batch, for every datamodule and every
band / DEM option, so that torchgeo's tasks can denormalize and plot any batch (``K.Denormalize(mean, std)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kornia.augmentation as K
import pytest
import torch
from conftest import load_fake_data_generator
from lightning.pytorch import Trainer

from sam_cffnet.datamodules import (
    BijieDataModule,
    DemoBijieDataModule,
    GVLMDataModule,
    InventoryDataModule,
    Landslide4SenseDataModule,
    ReferenceTilesDataModule,
)


@pytest.fixture(scope='module')
def inventory(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    gen = load_fake_data_generator('inventory')
    return gen.make_inventory(tmp_path_factory.mktemp('inventory'), scenes=1, size=192, dem=True)


def _datamodule(case: str, roots: dict[str, Path], inventory: dict[str, Any], tmp_path: Path) -> Any:
    name, _, option = case.partition(':')
    options = dict(item.split('=') for item in option.split(',')) if option else {}
    common: dict[str, Any] = {'tile_size': 32, 'batch_size': 2}
    if name == 'bijie':
        return BijieDataModule(roots['bijie'], **common, **options)
    if name == 'demo':
        return DemoBijieDataModule(str(tmp_path / 'demo'), num_landslide=4, num_non_landslide=2, **common, **options)
    if name == 'landslide4sense':
        bands: Any = options.pop('bands', 'rgb')
        bands = [int(b) for b in bands.split('+')] if '+' in bands else bands
        return Landslide4SenseDataModule(roots['landslide4sense'], bands=bands, **common, **options)
    if name == 'gvlm':
        return GVLMDataModule(roots['gvlm'], **common, **options)
    if name == 'reference_tiles':
        return ReferenceTilesDataModule(roots['reference_tiles'], **common, **options)
    assert name == 'inventory'
    dem = {'dem': inventory['dem']} if options.get('dem_mode', 'none') != 'none' else {}
    return InventoryDataModule(
        images=inventory['images'], labels=inventory['labels'], block_size=64, split_ratios=(0.6, 0.2, 0.2),
        cache_dir=str(tmp_path / 'cache'), progress=False, **common, **dem, **options,
    )  # fmt: skip


CASES = [
    *(f'bijie:dem_mode={d},normalization={n}' for d in ('none', 'band', 'separate')
      for n in ('reference', 'dataset', 'none')),
    'bijie:dem_mode=band,chip_mode=pad',
    'demo:dem_mode=band',
    *(f'landslide4sense:bands={b},dem_mode={d},normalization=dataset' for b in ('rgb', 'all', '0+1+2+3+7')
      for d in ('none', 'band', 'separate') if not (b == 'all' and d != 'none')),
    'landslide4sense:bands=all,normalization=reference',
    'gvlm:normalization=dataset',
    'gvlm',
    'reference_tiles',
    *(f'inventory:dem_mode={d},normalization={n}' for d in ('none', 'band', 'separate')
      for n in ('reference', 'dataset')),
]  # fmt: skip


@pytest.mark.parametrize('case', CASES)
def test_mean_and_std_match_every_channel_of_a_batch(
    case: str, fake_roots: dict[str, Path], inventory: dict[str, Any], tmp_path: Path
) -> None:
    dm = _datamodule(case, fake_roots, inventory, tmp_path)
    dm.prepare_data()
    dm.setup('fit')
    raw = next(iter(dm.val_dataloader()))
    batch = dm.on_after_batch_transfer({k: v.clone() for k, v in raw.items()}, 0)
    channels = batch['image'].shape[1]
    assert channels == dm.num_channels
    assert dm.mean.shape == dm.std.shape == (channels,), (dm.mean, dm.std)
    # what torchgeo's tasks do before plotting: the spectral channels come back in raw units (unclipped values)
    aug = K.AugmentationSequential(K.Denormalize(dm.mean, dm.std), data_keys=None, keepdim=True)
    restored = aug({'image': batch['image'].clone(), 'mask': batch['mask'].float()})['image']
    assert restored.shape == batch['image'].shape
    bands = len(dm.bands)
    if raw['image'].shape[-2:] == batch['image'].shape[-2:]:
        torch.testing.assert_close(restored[:, :bands], raw['image'].float(), atol=1e-3, rtol=1e-4)
    if channels > bands:  # DEM channels inside the image are per-tile z-scores: left as they are
        assert torch.equal(restored[:, bands:], batch['image'][:, bands:])


def test_torchgeo_segmentation_task_runs_and_plots_on_the_dem_band_case(fake_roots: dict[str, Path]) -> None:
    """torchgeo's own ``SemanticSegmentationTask`` on ``BijieDataModule(dem_mode='band')`` (4 channels): one training
    and one validation batch, whose validation step denormalizes the batch with ``datamodule.mean/std`` and plots it
    (it crashed with 3 values for 4 channels)."""
    from torchgeo.trainers import SemanticSegmentationTask

    dm = BijieDataModule(fake_roots['bijie'], dem_mode='band', tile_size=32, batch_size=2)
    task = SemanticSegmentationTask(
        model='unet', backbone='resnet18', weights=None, in_channels=dm.num_channels, task='binary', loss='bce'
    )
    figures: list[Any] = []
    plot = dm.plot

    def recording_plot(*args: Any, **kwargs: Any) -> Any:
        figures.append(plot(*args, **kwargs))
        return figures[-1]

    dm.plot = recording_plot  # type: ignore[method-assign]  # records the real plot's figure
    trainer = Trainer(fast_dev_run=True, accelerator='cpu', enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, datamodule=dm)
    assert dm.num_channels == 4 and len(figures) == 1 and figures[0] is not None
