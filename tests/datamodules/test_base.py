"""Tests for the shared datamodule machinery (splits, augmentation, normalization, YAML config, Trainer)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer

from sam_cffnet.datamodules import BijieDataModule, EpochShuffleSampler, split_indices


def test_split_indices() -> None:
    parts = split_indices(100, (0.7, 0.2, 0.1), seed=3)
    assert [len(p) for p in parts] == [70, 20, 10]
    assert sorted(i for p in parts for i in p) == list(range(100))
    assert parts == split_indices(100, (0.7, 0.2, 0.1), seed=3)
    assert parts != split_indices(100, (0.7, 0.2, 0.1), seed=4)
    groups = [i < 30 for i in range(100)]
    strat = split_indices(100, (0.5, 0.5), seed=0, groups=groups)
    assert sum(i < 30 for i in strat[0]) == 15
    with pytest.raises(ValueError, match='ratios'):
        split_indices(10, (-1, 2), seed=0)


def _dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    return [torch.rot90(v, k, (-2, -1)) for v in (x, x.flip(-1)) for k in range(4)]


def test_augment_batch_consistent(bijie_root: Path) -> None:
    """kornia flips + 90-degree rotations, the same for image, mask and DEM, per sample."""
    dm = BijieDataModule(bijie_root, augment=True)
    dm.trainer = SimpleNamespace(training=True, current_epoch=0, global_rank=0)  # type: ignore[assignment]
    torch.manual_seed(0)
    image = torch.rand(16, 3, 8, 8)
    batch = {'image': image, 'mask': (image[:, 0] > 0.5).long(), 'dem': image[:, :1] * 2}
    out = dm.augment_batch(batch)
    assert out['image'].shape == image.shape and out['mask'].dtype == torch.int64
    assert torch.equal(out['mask'], (out['image'][:, 0] > 0.5).long())
    assert torch.allclose(out['dem'], out['image'][:, :1] * 2, atol=1e-5)
    assert not torch.allclose(out['image'], image)
    # each output sample is one of the 8 dihedral transforms of its input (kornia rotates by resampling: ~1e-6)
    for i in range(16):
        assert any(torch.allclose(out['image'][i], c, atol=1e-5) for c in _dihedral(image[i]))
    used = {min(range(8), key=lambda k: (out['image'][i] - _dihedral(image[i])[k]).abs().max()) for i in range(16)}
    assert len(used) >= 4  # the draws vary per sample


def test_augmentation_draws_depend_on_seed_epoch_and_batch_only(bijie_root: Path) -> None:
    """A resumed run draws the same augmentations: the stream is (seed, epoch, batch number, rank), not global."""
    image = torch.rand(8, 3, 8, 8)
    batch = {'image': image, 'mask': (image[:, 0] > 0.5).long()}

    def run(epoch: int, seed: int = 0) -> list[torch.Tensor]:
        dm = BijieDataModule(bijie_root, augment=True, seed=seed)
        dm.trainer = SimpleNamespace(training=True, current_epoch=epoch, global_rank=0)  # type: ignore[assignment]
        torch.manual_seed(123 + epoch)  # the global state must not matter
        return [dm.augment_batch(batch)['image'] for _ in range(3)]

    first, again = run(1), run(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1])  # batch number changes the draw
    assert not torch.equal(run(2)[0], first[0]) and not torch.equal(run(1, seed=5)[0], first[0])


def test_epoch_shuffle_sampler_order_depends_on_seed_and_epoch() -> None:
    sampler = EpochShuffleSampler(50, seed=7)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert all(sorted(o) == list(range(50)) for o in orders) and orders[0] != orders[1]
    fresh = EpochShuffleSampler(50, seed=7)  # a resumed run: a new sampler told the epoch
    fresh.set_epoch(2)
    assert list(fresh) == orders[2]


def test_augment_only_when_training(bijie_root: Path) -> None:
    dm = BijieDataModule(bijie_root, tile_size=16, batch_size=4, augment=True)
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    ref = dm.on_after_batch_transfer(batch, 0)  # no trainer: no augmentation
    dm.trainer = SimpleNamespace(training=False, current_epoch=0, global_rank=0)  # type: ignore[assignment]
    assert torch.equal(dm.on_after_batch_transfer(batch, 0)['image'], ref['image'])
    dm.trainer = SimpleNamespace(training=True, current_epoch=0, global_rank=0)  # type: ignore[assignment]
    torch.manual_seed(0)
    outs = [dm.on_after_batch_transfer(batch, 0) for _ in range(4)]
    assert any(not torch.equal(o['image'], ref['image']) for o in outs)
    dm.augment = False
    assert torch.equal(dm.on_after_batch_transfer(batch, 0)['image'], ref['image'])


def test_invalid_args(bijie_root: Path) -> None:
    with pytest.raises(ValueError, match='normalization'):
        BijieDataModule(bijie_root, normalization='imagenet')  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='dem_mode'):
        BijieDataModule(bijie_root, dem_mode='stack')  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='positive'):
        BijieDataModule(bijie_root, tile_size=0)
    with pytest.raises(ValueError, match='3 values'):
        _ = BijieDataModule(bijie_root, normalization='dataset', mean=[1.0], std=[1.0]).preprocessing


def test_yaml_config(bijie_root: Path, tmp_path: Path) -> None:
    from jsonargparse import ArgumentParser

    cfg_file = tmp_path / 'data.yaml'
    cfg_file.write_text(
        'data:\n'
        '  class_path: sam_cffnet.datamodules.BijieDataModule\n'
        '  init_args:\n'
        f'    root: {bijie_root}\n'
        '    tile_size: 16\n'
        '    chip_mode: pad\n'
        '    split_ratios: [0.5, 0.25, 0.25]\n'
        '    normalization: dataset\n'
        '    dem_mode: separate\n'
        '    augment: true\n'
        '    batch_size: 3\n'
        '    pin_memory: false\n'
    )
    from lightning.pytorch import LightningDataModule

    parser = ArgumentParser()
    parser.add_argument('--config', action='config')
    parser.add_subclass_arguments(LightningDataModule, 'data')
    cfg = parser.parse_args(['--config', str(cfg_file)])
    dm = parser.instantiate_classes(cfg).data
    assert isinstance(dm, BijieDataModule)
    assert (dm.tile_size, dm.chip_mode, dm.split_ratios, dm.batch_size) == (16, 'pad', (0.5, 0.25, 0.25), 3)
    assert dm.preprocessing.normalization == 'dataset' and dm.preprocessing.dem_mode == 'separate'


class _TinyModel(LightningModule):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 1, 1)
        self.seen: list[dict[str, tuple[int, ...] | torch.dtype]] = []

    def _step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.seen.append({k: tuple(v.shape) for k, v in batch.items()} | {'mask_dtype': batch['mask'].dtype})
        logits = self.conv(batch['image']).squeeze(1)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, batch['mask'].float())

    def training_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
        return self._step(batch)

    def validation_step(self, batch: dict[str, torch.Tensor], _: int) -> None:
        self._step(batch)

    def test_step(self, batch: dict[str, torch.Tensor], _: int) -> None:
        self._step(batch)

    def predict_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
        return self.conv(batch['image'])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_integration(bijie_root: Path) -> None:
    dm = BijieDataModule(bijie_root, tile_size=16, batch_size=2, dem_mode='separate', augment=True)
    model = _TinyModel(dm.num_channels)
    trainer = Trainer(accelerator='cpu', fast_dev_run=True, logger=False, enable_progress_bar=False,
                      enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm)
    preds = trainer.predict(model, datamodule=dm)
    assert preds is not None and preds[0].shape[-2:] == (16, 16)
    assert model.seen[0] == {'image': (2, 3, 16, 16), 'mask': (2, 16, 16), 'dem': (2, 1, 16, 16),
                             'mask_dtype': torch.int64}  # fmt: skip
    json.dumps(dm.preprocessing.to_dict())
