"""Feature cache: cached vs. uncached losses, invalidation by encoder/input size, truncation and staleness checks."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from sam_cffnet.datamodules import DemoBijieDataModule
from sam_cffnet.datasets.demo import make_demo_bijie
from sam_cffnet.errors import ConfigError
from sam_cffnet.features import CachedFeatureDataModule, CacheError, FeatureCache, extract_folder, extract_split
from sam_cffnet.features.cache import HEADER, encoder_cache_config
from sam_cffnet.models import build_model
from sam_cffnet.models.encoders.sam import SAMEncoder
from sam_cffnet.tasks.segmentation import SegmentationTask

TILE = 64


@pytest.fixture(scope='module')
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp('bijie')
    make_demo_bijie(root, num_landslide=4, num_non_landslide=2, size_range=(64, 80))
    return root


def _datamodule(root: Path, **kwargs: object) -> DemoBijieDataModule:
    args = {'tile_size': TILE, 'batch_size': 2, 'split_ratios': (0.6, 0.2, 0.2), **kwargs}
    return DemoBijieDataModule(root=str(root), **args)  # type: ignore[arg-type]


def _task(**model_args: object) -> SegmentationTask:
    args = {'variant': 'vit_tiny', 'input_size': None, 'decoder_channels': 64, **model_args}
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*RANDOM weights')
        return SegmentationTask(build_model('sam_cffnet', **args))


def _first_loss(task: SegmentationTask, dm: object) -> torch.Tensor:
    batch = next(iter(dm.train_dataloader()))  # type: ignore[attr-defined]
    batch = dm.on_after_batch_transfer(batch, 0)  # type: ignore[attr-defined]
    logits, _ = task.model.training_outputs(batch)
    return task.loss_fn(logits, batch['mask'])


def test_cached_and_uncached_first_step_match(data_root: Path, tmp_path: Path) -> None:
    task = _task()
    plain = _datamodule(data_root)
    plain.setup('fit')
    cached = CachedFeatureDataModule(_datamodule(data_root), str(tmp_path), encoder=task.model.encoder)
    cached.setup('fit')
    assert set(cached.caches) == {'train', 'val'}
    batch = cached.on_after_batch_transfer(next(iter(cached.train_dataloader())), 0)
    assert len(batch['features']) == 4 and batch['features'][0].dtype == torch.float16
    assert batch['features'][0].shape == (2, 64, TILE // 16, TILE // 16)
    with torch.no_grad():
        ref = _first_loss(task, plain)
        loss = _first_loss(task, cached)
    assert torch.allclose(loss, ref, rtol=2e-3, atol=2e-3), (loss.item(), ref.item())
    # validation path of the task (model(image, features)) gives the same logits as the encoder path
    task.eval()
    with torch.no_grad():
        vb = cached.on_after_batch_transfer(next(iter(cached.val_dataloader())), 0)
        a = task(*task.model_inputs(vb))
        b = task(vb['image'])
    assert torch.allclose(a, b, atol=5e-3)


def test_trainer_fit_from_cache(data_root: Path, tmp_path: Path) -> None:
    from lightning.pytorch import Trainer

    task = _task()
    dm = CachedFeatureDataModule(_datamodule(data_root), str(tmp_path / 'cache'))
    trainer = Trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    task.hparams.num_figure_tiles = 0
    trainer.fit(task, datamodule=dm)
    assert trainer.global_step == 1 and np.isfinite(float(trainer.callback_metrics['train_loss']))


def test_changed_checkpoint_or_input_size_invalidates(data_root: Path, tmp_path: Path) -> None:
    enc = SAMEncoder('vit_tiny', input_size=None)
    dm = _datamodule(data_root)
    first = extract_split(enc, dm, 'val', tmp_path, progress=False)
    assert extract_split(enc, dm, 'val', tmp_path, progress=False) == first  # up to date: reused
    # another checkpoint (different weights) -> another key, the old cache is refused
    ckpt = tmp_path / 'other_sam.pth'
    other = SAMEncoder('vit_tiny', input_size=None)
    with torch.no_grad():
        other.vit.pos_embed.add_(1.0)
    torch.save({f'image_encoder.{k}': v for k, v in other.vit.state_dict().items()}, ckpt)
    enc2 = SAMEncoder('vit_tiny', sam_checkpoint=ckpt, input_size=None)
    assert encoder_cache_config(enc2)['fingerprint'] != encoder_cache_config(enc)['fingerprint']
    with pytest.raises(CacheError, match='fingerprint'):
        CachedFeatureDataModule(_datamodule(data_root), str(tmp_path), build=False, encoder=enc2).setup('validate')
    # another input size -> another key
    enc3 = SAMEncoder('vit_tiny', input_size=128)
    with pytest.raises(CacheError, match='input_size'):
        CachedFeatureDataModule(_datamodule(data_root), str(tmp_path), build=False, encoder=enc3).setup('validate')
    second = extract_split(enc3, dm, 'val', tmp_path, progress=False)
    assert second != first and FeatureCache(second).level_shapes[0] == (64, 8, 8)


def test_truncated_unfinished_and_changed_tiles_detected(data_root: Path, tmp_path: Path) -> None:
    enc = SAMEncoder('vit_tiny', input_size=None)
    path = extract_split(enc, _datamodule(data_root), 'val', tmp_path, progress=False)
    FeatureCache(path, integrity='full')
    level = path / 'level2.npy'
    data = level.read_bytes()
    # corrupted (same size) -> only the full check sees it
    level.write_bytes(data[:-2] + bytes([data[-2] ^ 1, data[-1]]))
    FeatureCache(path)
    with pytest.raises(CacheError, match='checksum'):
        FeatureCache(path, integrity='full')
    # truncated
    level.write_bytes(data[:-100])
    with pytest.raises(CacheError, match='truncated'):
        FeatureCache(path)
    with pytest.raises(CacheError, match='truncated'):
        CachedFeatureDataModule(_datamodule(data_root), str(tmp_path), encoder=enc).setup('validate')
    # unfinished (no header): refused, and not overwritten without the flag
    (path / HEADER).unlink()
    with pytest.raises(CacheError, match='did not finish'):
        FeatureCache(path)
    with pytest.raises(FileExistsError, match='UNFINISHED'):
        extract_split(enc, _datamodule(data_root), 'val', tmp_path, progress=False)
    path = extract_split(enc, _datamodule(data_root), 'val', tmp_path, overwrite=True, progress=False)
    # a tile that changed after extraction is refused when served
    hashes = np.load(path / 'tile_hashes.npy')
    hashes[0] ^= np.uint64(1)
    np.save(path / 'tile_hashes.npy', hashes)
    header = json.loads((path / HEADER).read_text())
    header['files']['tile_hashes.npy']['bytes'] = (path / 'tile_hashes.npy').stat().st_size
    (path / HEADER).write_text(json.dumps(header))
    dm = CachedFeatureDataModule(_datamodule(data_root), str(tmp_path), encoder=enc)
    dm.setup('validate')
    with pytest.raises(CacheError, match='differs from the tile'):
        next(iter(dm.val_dataloader()))


def test_refusals(data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='no augmentation'):
        CachedFeatureDataModule(_datamodule(data_root, augment=True), str(tmp_path))
    enc = SAMEncoder('vit_tiny', input_size=None, band_adapter='project', band_indices=[0, 1, 2])
    with pytest.raises(ValueError, match='trainable'):
        encoder_cache_config(enc)
    import shutil

    enc = SAMEncoder('vit_tiny', input_size=None)
    usage = shutil.disk_usage(tmp_path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shutil, 'disk_usage', lambda p: usage._replace(free=10))
        with pytest.raises(OSError, match='not enough disk space'):
            extract_split(enc, _datamodule(data_root), 'val', tmp_path, progress=False)


def test_extract_folder_and_cli(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sam_cffnet.cli import main

    folder = next(data_root.rglob('landslide/image'))
    enc = SAMEncoder('vit_tiny', input_size=64)
    with pytest.raises(ValueError, match='several sizes'):
        extract_folder(enc, folder, tmp_path, progress=False)
    images = tmp_path / 'images'
    images.mkdir()
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((48, 48, 3), 40 * i, np.uint8)).save(images / f't{i}.png')
    path = extract_folder(enc, images, tmp_path / 'out', progress=False)
    cache = FeatureCache(path)
    assert len(cache) == 3 and cache.header['files_in_order'] == ['t0.png', 't1.png', 't2.png']
    ref = enc(torch.full((1, 3, 48, 48), 80 / 255)).features
    assert torch.allclose(cache.features(2)[3].float(), ref[3][0], atol=2e-2)
    # the CLI entry (config mode, overrides passed through)
    cfg = tmp_path / 'cfg.yaml'
    cfg.write_text(
        'model:\n  model:\n    class_path: sam_cffnet.models.SAMCFFNet\n'
        '    init_args: {variant: vit_tiny, input_size: null, attention: sdpa, decoder_channels: 64}\n'
        f'data:\n  class_path: sam_cffnet.datamodules.DemoBijieDataModule\n  init_args:\n    root: {data_root}\n'
        f'    tile_size: {TILE}\n    batch_size: 2\n    split_ratios: [0.6, 0.2, 0.2]\n'
    )
    out = tmp_path / 'feats'
    assert main(['extract-features', '--config', str(cfg), '--split', 'val', '--output', str(out)]) == 0
    text = capsys.readouterr().out
    assert 'on disk' in text and 'wrote' in text
    (made,) = out.glob('val-*')
    assert FeatureCache(made).key['encoder']['attention'] == 'sdpa'


def test_the_wrapped_datamodule_is_left_as_it_is(data_root: Path, tmp_path: Path) -> None:
    """The cached datasets are served beside the wrapped datamodule, not written into it: after the wrapper's setup
    the datamodule still serves its own tiles (no ``features``), with the same tiles in the same order."""
    task = _task()
    inner = _datamodule(data_root)
    cached = CachedFeatureDataModule(inner, str(tmp_path), encoder=task.frozen_encoder)
    cached.setup('fit')
    inner.setup('fit')
    plain = next(iter(inner.train_dataloader()))
    served = next(iter(cached.train_dataloader()))
    assert 'features' not in plain and 'features' in served
    assert torch.equal(plain['image'], served['image'])
    assert not any(type(getattr(inner, f'{s}_dataset', None)).__name__ == 'CachedTiles' for s in ('train', 'val'))


def test_the_encoder_is_the_one_the_task_declares(data_root: Path, tmp_path: Path) -> None:
    """In a Trainer the caches are keyed with the task's ``frozen_encoder``; a model without one is refused."""
    task = _task()
    assert task.frozen_encoder is task.model.encoder
    baseline = SegmentationTask(build_model('attention_unet', base_channels=8))
    assert baseline.frozen_encoder is None
    from lightning.pytorch import Trainer

    trainer = Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path)  # fmt: skip
    with pytest.raises(ConfigError, match='needs the frozen SAM encoder'):
        trainer.fit(baseline, datamodule=CachedFeatureDataModule(_datamodule(data_root), str(tmp_path / 'c')))
