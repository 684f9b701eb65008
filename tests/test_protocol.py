"""The reference protocol (``sam_cffnet/configs/reference/``) against small re-creations of the authors' code.

Each test re-creates one piece of the authors' behaviour from their source (github:JunchuanYu/SAM-CFFNet at 9613547,
github:JunchuanYu/TransLandSeg at 877934c; the file:line is named in each test) and checks that the reference recipe
reproduces it, and that our default recipe does not (so the test can fail).
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from conftest import model_flags
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from sam_cffnet.cli import instantiate_config, main
from sam_cffnet.models.adapters.atl import PromptATL
from sam_cffnet.recipes import resolve_config, shipped_configs

TINY = {'variant': 'vit_tiny', 'input_size': None, 'sam_checkpoint': None}
REFERENCE = sorted(name for name in shipped_configs() if name.startswith('reference/'))


def build(config: str, root: Path | str, *extra: str) -> tuple[Any, Any]:
    """Task and datamodule of a shipped recipe with a tiny random encoder (nothing is read before setup)."""
    return instantiate_config(['--config', config, '--data.init_args.root', str(root), *model_flags(TINY), *extra])


# ---------------------------------------------------------------------------------------------- data order
class AuthorsH5Dataset(Dataset):
    """Re-creation of SAM-CFFNet ``utils/tools.py:224-252`` (``h5_Dataset``)."""

    def __init__(self, h5_dir: Path, train: bool) -> None:
        self.images_dir = str(h5_dir) + os.sep + ('train' if train else 'val')
        self.images = [i for i in sorted(os.listdir(self.images_dir)) if i.endswith('.h5')]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        with h5py.File(self.images_dir + os.sep + self.images[i]) as h5data:
            rgb, lab = h5data['image'][:], h5data['label'][:]
        img = torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float() / 255  # torchvision ToTensor on HWC uint8
        lab = torch.from_numpy(np.where(lab <= 128, 0, 1))
        return img, torch.unsqueeze(lab, dim=0)


def write_tiles(root: Path, names: dict[str, int]) -> None:
    """H5 tiles whose lexicographic order differs from their numeric order; tile k has all pixels near k."""
    rng = np.random.default_rng(0)
    for split, n in names.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            label = (rng.random((32, 32)) > 0.6).astype(np.uint8) * 255
            label[0, :2] = (128, 129)  # the authors' `<= 128` boundary
            with h5py.File(root / split / f'tra_GVLM_{k}_{(k * 37) % 101}.h5', 'w') as f:
                f.create_dataset('image', data=image)
                f.create_dataset('label', data=label)


def our_batches(datamodule: Any, loader: DataLoader, epochs: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for epoch in range(epochs):
        if hasattr(loader.sampler, 'set_epoch'):
            loader.sampler.set_epoch(epoch)
        for batch in loader:
            batch = datamodule.on_after_batch_transfer(batch, 0)
            out.append((batch['image'], batch['mask']))
    return out


def test_h5_batches_and_order_match_the_authors_loader(tmp_path: Path) -> None:
    """utils/tools.py:285-286: ``DataLoader(shuffle=False, drop_last=True)`` for train and val over sorted files."""
    write_tiles(tmp_path, {'train': 19, 'val': 11})
    theirs_train = DataLoader(AuthorsH5Dataset(tmp_path, True), batch_size=8, shuffle=False, drop_last=True)
    theirs_val = DataLoader(AuthorsH5Dataset(tmp_path, False), batch_size=8, shuffle=False, drop_last=True)
    expected_train = [(x, y[:, 0]) for _ in range(2) for x, y in theirs_train]
    expected_val = [(x, y[:, 0]) for x, y in theirs_val]
    assert len(expected_train) == 4 and len(expected_val) == 1  # 19 -> 2 batches per epoch, 11 -> 1 (3 not scored)

    _, dm = build('reference/sam_cffnet_h5.yaml', tmp_path, '--data.init_args.tile_size', '32')
    dm.setup('fit')
    ours_train = our_batches(dm, dm.train_dataloader(), epochs=2)
    ours_val = our_batches(dm, dm.val_dataloader(), epochs=1)
    for ours, theirs in ((ours_train, expected_train), (ours_val, expected_val)):
        assert len(ours) == len(theirs)
        for (x, y), (tx, ty) in zip(ours, theirs, strict=True):
            torch.testing.assert_close(x, tx)
            assert torch.equal(y, ty)
    dm.setup('test')
    assert len(dm.test_dataset) == 11  # test == val, as the paper

    # the default recipe shuffles (seeded per epoch) and scores every val tile: not the authors' batches
    _, default = build('reference_tiles.yaml', tmp_path, '--data.init_args.tile_size', '32')
    default.setup('fit')
    shuffled = our_batches(default, default.train_dataloader(), epochs=1)
    assert any(not torch.equal(x, tx) for (x, _), (tx, _) in zip(shuffled, expected_train, strict=False))
    assert sum(len(y) for _, y in our_batches(default, default.val_dataloader(), epochs=1)) == 11


# ---------------------------------------------------------------------------------------------- metrics
class AuthorsEvaluator:
    """Re-creation of the authors' ``Evaluator`` (SAM-CFFNet utils/Evaluator.py, TransLandSeg Evaluator.py) and of
    SAM-CFFNet's result dict (utils/tools.py:31-44: macro P/R/F1 over the two classes, 'Iou 1', mIoU)."""

    def __init__(self) -> None:
        self.confusion_matrix = np.zeros((2, 2))

    def add_batch(self, gt: np.ndarray, pred: np.ndarray) -> None:
        mask = (gt >= 0) & (gt < 2)
        label = 2 * gt[mask].astype(int) + pred[mask].astype(int)
        self.confusion_matrix += np.bincount(label, minlength=4).reshape(2, 2)

    def result(self) -> dict[str, float]:
        cm = self.confusion_matrix
        with np.errstate(divide='ignore', invalid='ignore'):
            precision = np.diag(cm) / cm.sum(axis=0)
            recall = np.diag(cm) / cm.sum(axis=1)
            f1 = 2 * precision * recall / (precision + recall)
            iou = np.diag(cm) / (cm.sum(axis=1) + cm.sum(axis=0) - np.diag(cm))
            freq = cm.sum(axis=1) / cm.sum()
        return {
            'overall_accuracy': np.diag(cm).sum() / cm.sum(),
            'macro_precision': (precision[0] + precision[1]) / 2.0,
            'macro_recall': (recall[0] + recall[1]) / 2.0,
            'macro_f1': (f1[0] + f1[1]) / 2.0,
            'landslide_f1': f1[1],
            'landslide_iou': iou[1],
            'miou': np.nanmean(iou),
            'fwiou': (freq[freq > 0] * iou[freq > 0]).sum(),
        }


def batches_of_logits() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    out = []
    for _ in range(3):
        target = (torch.rand(2, 16, 16, generator=g) > 0.6).long()
        # many logits in (0, 0.5]: predicted landslide by probability > 0.5, background by logit > 0.5
        logits = (target[:, None] * 1.2 - 0.3 + 0.5 * torch.randn(2, 1, 16, 16, generator=g)).float()
        out.append((logits, target))
    return out


@pytest.mark.parametrize(
    ('config', 'authors_rule'),
    [
        ('reference/sam_cffnet_h5.yaml', 'logits'),  # SAM-CFFNet utils/tools.py:188, 216: output > 0.5
        ('reference/sam_cffnet_gvlm.yaml', 'logits'),
        ('reference/translandseg_bijie.yaml', 'probabilities'),  # TransLandSeg train.py:136-137, 171-172
    ],
)
def test_metrics_match_the_authors_evaluator(config: str, authors_rule: str, tmp_path: Path) -> None:
    task, _ = build(config, tmp_path)
    theirs = AuthorsEvaluator()
    for logits, target in batches_of_logits():
        scores = logits if authors_rule == 'logits' else torch.sigmoid(logits)
        theirs.add_batch(target.numpy(), torch.where(scores > 0.5, 1, 0)[:, 0].numpy())
        task.val_metrics.update(logits, target)
    ours = {k: float(v) for k, v in task.val_metrics.compute().items()}
    expected = theirs.result()
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, abs=1e-9), name
    if authors_rule == 'logits':  # our default recipe (probability > 0.5) gives other numbers
        default, _ = build('gvlm.yaml', tmp_path)
        for logits, target in batches_of_logits():
            default.val_metrics.update(logits, target)
        assert float(default.val_metrics.compute()['landslide_iou']) != pytest.approx(expected['landslide_iou'])


# ---------------------------------------------------------------------------------------------- TransLandSeg ATL
def authors_init_embeddings(x: torch.Tensor, embedding_generator: torch.nn.Linear) -> torch.Tensor:
    """TransLandSeg models/mmseg/models/sam/image_encoder.py:289-292 (x: N x H x W x C patch tokens)."""
    N, C, H, W = x.permute(0, 3, 1, 2).shape
    x = x.reshape(N, C, H * W).permute(0, 2, 1)
    return embedding_generator(x)


def test_embedding_branch_reproduces_the_authors_token_reshape(tmp_path: Path) -> None:
    task, _ = build('reference/translandseg_bijie.yaml', tmp_path)
    atl = task.model.atl
    assert isinstance(atl, PromptATL) and atl.embedding_reshape == 'reference'
    b, h, w, c = 2, 4, 6, atl.embed_dim  # a non-square grid: rows and columns cannot be confused
    patch = torch.randn(b, h, w, c)
    pos = torch.randn(1, h, w, c)
    atl.bind_position_embedding(lambda grid: pos)  # the encoder hands begin() tokens with the position embedding
    handcrafted, atl.handcrafted_proj = atl.handcrafted_proj, None
    with torch.no_grad():
        ours = atl.begin(torch.zeros(b, 3, 16 * h, 16 * w), patch + pos)
        theirs = authors_init_embeddings(patch, atl.embedding_proj)  # N x HW x dim; prompt j sits at (j // W, j % W)
        torch.testing.assert_close(ours, theirs.reshape(b, h, w, -1), atol=1e-5, rtol=1e-5)
        atl.embedding_reshape = 'per_token'  # the default (the paper's description) differs
        assert not torch.allclose(atl.begin(torch.zeros(b, 3, 16 * h, 16 * w), patch + pos), ours, atol=1e-3)
    atl.handcrafted_proj = handcrafted


class AuthorsLayerNorm2d(torch.nn.Module):
    """TransLandSeg ``models/mmseg/models/sam/common.py:31-43``."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(num_channels))
        self.bias = torch.nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class AuthorsAdapter(torch.nn.Module):
    """TransLandSeg ``models/mmseg/models/sam/image_encoder2.py:647-681`` (``Adapter``, the "Space_Adapter")."""

    def __init__(self, D_features: int, mlp_ratio: float = 0.25, skip_connect: bool = True) -> None:
        super().__init__()
        self.skip_connect = skip_connect
        D_hidden_features = int(D_features * mlp_ratio)
        self.act = torch.nn.GELU()
        self.D_fc1 = torch.nn.Linear(D_features, D_hidden_features)
        self.D_fc2 = torch.nn.Linear(D_hidden_features, D_features)
        self.D_Con = torch.nn.Conv2d(D_features, D_features, 1, 1)
        self.D_LN = AuthorsLayerNorm2d(D_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = self.D_fc1(x)
        xs = self.act(xs)
        xs = self.D_fc2(xs)
        xs = xs.permute(0, 3, 1, 2)
        for _ in range(3):  # the same D_Con and D_LN three times
            xs = self.D_Con(xs)
            xs = self.D_LN(xs)
            xs = self.act(xs)
        xs = xs.permute(0, 2, 3, 1)
        return x + xs if self.skip_connect else xs


def authors_block_forward(blk: Any, adapter: AuthorsAdapter, x: torch.Tensor) -> torch.Tensor:
    """TransLandSeg ``image_encoder2.py:416-433`` (``Block.forward``): the adapter on the attention output, inside
    the window partition, before the attention residual."""
    from segment_anything.modeling.image_encoder import window_partition, window_unpartition

    shortcut = x
    x = blk.norm1(x)
    if blk.window_size > 0:
        H, W = x.shape[1], x.shape[2]
        x, pad_hw = window_partition(x, blk.window_size)
    x = blk.attn(x)
    x = adapter(x)
    if blk.window_size > 0:
        x = window_unpartition(x, blk.window_size, pad_hw, (H, W))
    x = shortcut + x
    return x + blk.mlp(blk.norm2(x))


def as_authors_adapter(ours: torch.nn.ModuleDict) -> AuthorsAdapter:
    """The authors' ``Adapter`` holding the weights of one of our space adapters."""
    theirs = AuthorsAdapter(ours['fc1'].in_features)
    names = {'fc1': 'D_fc1', 'fc2': 'D_fc2', 'conv': 'D_Con', 'norm': 'D_LN'}
    theirs.load_state_dict({f'{names[k.split(".")[0]]}.{k.split(".")[1]}': v for k, v in ours.state_dict().items()})
    return theirs


def test_space_adapter_initialises_as_the_authors_adapter() -> None:
    """image_encoder2.py:647-657 has no init of its own: PyTorch's defaults, drawn in the order fc1, fc2, conv, LN."""
    from sam_cffnet.models.adapters.atl import SpaceATL

    dim = 64
    torch.manual_seed(7)
    theirs = AuthorsAdapter(dim)
    torch.manual_seed(7)
    atl = SpaceATL(dim, depth=1, init='default')
    for (name, p), q in zip(theirs.named_parameters(), as_authors_adapter(atl.adapters[0]).parameters(), strict=True):
        assert torch.equal(p, q), name
    x = torch.randn(2, 5, 7, dim)  # B x h x w x C tokens
    with torch.no_grad():
        torch.testing.assert_close(atl.adapt(0, x), theirs(x), atol=1e-5, rtol=0)
    torch.manual_seed(7)
    default = SpaceATL(dim, depth=1).adapters[0]  # our default recipe's trunc-normal init differs
    assert not torch.equal(default['fc1'].weight, theirs.D_fc1.weight)


def test_space_adapter_is_the_authors_adapter_frozen_at_pytorch_defaults_in_the_reference_recipe(
    fake_roots: dict[str, Path], tmp_path: Path
) -> None:
    """TransLandSeg image_encoder2.py:369-433, 647-681 (the adapter in each block, no init of its own) and
    train.py:116-118 (frozen with the encoder): after a fit through the CLI every block with its adapter computes what
    the authors' ``Block`` with their ``Adapter`` computes."""
    args = ['--config', 'reference/translandseg_bijie.yaml', '--data.init_args.root', str(fake_roots['bijie']),
            *model_flags({**TINY, 'atl': 'space'}), '--data.init_args.tile_size', '64',
            '--data.init_args.num_workers', '0', '--trainer.accelerator', 'cpu', '--trainer.logger', 'false',
            '--trainer.enable_progress_bar', 'false', '--trainer.default_root_dir', str(tmp_path)]  # fmt: skip
    before, _ = instantiate_config(args)  # seed_everything 42: the same initial weights as the run below
    cli = main(['fit', *args, '--trainer.max_epochs', '1', '--trainer.limit_train_batches', '1'])
    atl = cli.model.model.atl
    assert atl.init == 'default' and not any(p.requires_grad for p in atl.parameters())
    trained = {id(p) for group in cli.trainer.optimizers[0].param_groups for p in group['params']}
    assert not any(id(p) in trained for p in atl.parameters())
    for (name, p), q in zip(atl.named_parameters(), before.model.atl.parameters(), strict=True):
        assert torch.equal(p, q), name
    fc1 = atl.adapters[0]['fc1'].weight  # PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert fc1.abs().max() <= 1 / fc1.shape[1] ** 0.5 and fc1.std() > 0.3 / fc1.shape[1] ** 0.5

    from sam_cffnet.models.encoders.sam import _run_block

    blocks = cli.model.model.encoder.vit.blocks
    assert len(blocks) == atl.depth
    x = torch.randn(2, 5, 7, atl.embed_dim)  # 5 x 7 tokens: window padding and a non-square grid
    with torch.no_grad():
        for i, blk in enumerate(blocks):
            ours = _run_block(blk, x, i, atl, None)
            theirs = authors_block_forward(blk, as_authors_adapter(atl.adapters[i]), x)
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
            without = blk(x)  # the block without an adapter: the comparison can fail
            assert (without - theirs).abs().max() > 1e-2


# ---------------------------------------------------------------------------------------------- Bijie split
def authors_bijie_split(image_dir: Path) -> tuple[set[str], set[str]]:
    """TransLandSeg train.py:39-50 over loader.py:236-238's sorted file list (their image folder: landslide chips)."""
    images = [i for i in sorted(os.listdir(image_dir)) if i.endswith('.png')]
    num_train = len(images)
    indices = list(range(num_train))
    split = int(np.floor(0.3 * num_train)) + 1
    state = np.random.get_state()
    try:
        np.random.seed(42)
        np.random.shuffle(indices)
    finally:
        np.random.set_state(state)
    train_idx, valid_idx = indices[split:], indices[:split]
    return {images[i] for i in train_idx}, {images[i] for i in valid_idx}


@pytest.mark.parametrize('config', ['reference/translandseg_bijie.yaml', 'reference/sam_cffnet_bijie.yaml'])
def test_bijie_split_matches_the_authors_70_30_seed_42(config: str, tmp_path: Path) -> None:
    base = tmp_path / 'Bijie-landslide-dataset'
    rng = np.random.default_rng(1)
    for category, names in (('landslide', [f'df{i:03d}.png' for i in range(1, 24)]),
                            ('non-landslide', [f'nl{i}.png' for i in range(1, 6)])):  # fmt: skip
        for name in names:
            (base / category / 'image').mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(base / category / 'image' / name)
            if category == 'landslide':
                (base / category / 'mask').mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((20, 24), 255, np.uint8)).save(base / category / 'mask' / name)
    train, val = authors_bijie_split(base / 'landslide' / 'image')
    assert len(val) == 7 and len(train) == 16  # floor(0.3 * 23) + 1

    _, dm = build(config, tmp_path, '--data.init_args.tile_size', '32')
    dm.setup('fit')
    dm.setup('test')
    files = dm.dataset_full.files

    def names(split: Any) -> set[str]:
        return {files[c]['image'].name for c, _, _ in split.tiles}

    assert names(dm.train_dataset) == train and names(dm.val_dataset) == val
    assert dm.test_dataset is dm.val_dataset and dm.split_info['test_split'] == 'val'
    _, default = build('bijie.yaml', tmp_path, '--data.init_args.tile_size', '32')
    default.setup('fit')
    assert {f['image'].name for f in default.dataset_full.files if not f['landslide']} & {
        default.dataset_full.files[c]['image'].name for c, _, _ in default.train_dataset.tiles
    }  # the default split also trains on non-landslide chips


# ---------------------------------------------------------------------------------------------- GVLM split, seed
def test_gvlm_reference_split_is_the_authors_1977_train_710_val_tiles(fake_roots: dict[str, Path]) -> None:
    """The paper's GVLM set (spec section 5): 2,687 tiles of 256 px, 1977 train and 710 val, by tile, no test. Which
    tiles they kept and their split seed are unknown (GUESS in the recipe): the counts are what can be checked."""
    from sam_cffnet.datamodules.base import split_indices

    _, dm = build('reference/sam_cffnet_gvlm.yaml', fake_roots['gvlm'], '--data.init_args.tile_size', '64')
    assert dm.split_mode == 'tile' and dm.drop_last_eval and not dm.shuffle
    assert [len(part) for part in split_indices(1977 + 710, dm.split_ratios, dm.seed)] == [1977, 710, 0]
    dm.setup('fit')
    dm.setup('test')
    assert len(dm.train_dataset) > len(dm.val_dataset) > 0  # (the ratio holds for groups of edge tiles here)
    assert dm.test_dataset is dm.val_dataset  # no test split: test == val, as the paper


@pytest.mark.parametrize('name', REFERENCE)
def test_reference_recipes_seed_as_the_authors(name: str, tmp_path: Path) -> None:
    """SAM-CFFNet: ``seed_everything(100)`` (utils/tools.py:21-29, Train_val.ipynb cell 2); TransLandSeg:
    ``torch.manual_seed(42)`` before the loaders (train.py:45-46). Only the seed is the same: the authors build the
    whole ViT-L (and SAM-CFFNet its neck) before the decoder, so the random numbers that initialise the trainable
    modules differ from ours (not tested: it needs their model code and ViT-L weights)."""
    from sam_cffnet.cli import parse_config

    config = parse_config(['--config', name, '--data.init_args.root', str(tmp_path)])
    assert config['seed_everything'] == (100 if name.startswith('reference/sam_cffnet') else 42)


# ---------------------------------------------------------------------------------------------- checkpoint choice
def authors_kept_epoch(val_losses: list[float]) -> int:
    """TransLandSeg train.py:201-212 (``early_stopping``): a checkpoint is written whenever ``valid_loss <=
    valid_loss_min[-1]``, which then becomes the new minimum; the last one written is the model kept."""
    valid_loss_min, kept = [np.inf], -1
    for epoch, valid_loss in enumerate(val_losses):
        if valid_loss <= valid_loss_min[-1]:
            kept = epoch
            valid_loss_min[-1] = valid_loss
    return kept


@pytest.mark.parametrize('lr', [0.01, 0.0])  # lr 0 (and eta_min 0): the weights never change, every epoch ties
def test_translandseg_reference_keeps_the_checkpoint_the_authors_keep(
    lr: float, fake_roots: dict[str, Path], tmp_path: Path
) -> None:
    """The epoch with the lowest validation loss, the LATER one on an exact tie (their ``<=``; Lightning's
    ``ModelCheckpoint`` alone keeps the earlier one)."""
    logger = [{'class_path': 'lightning.pytorch.loggers.CSVLogger', 'init_args': {'save_dir': str(tmp_path)}}]
    cli = main(['fit', '--config', 'reference/translandseg_bijie.yaml', '--data.init_args.root',
                str(fake_roots['bijie']), *model_flags(TINY), '--data.init_args.tile_size', '64',
                '--data.init_args.num_workers', '0', '--trainer.accelerator', 'cpu', '--trainer.max_epochs', '3',
                '--trainer.enable_progress_bar', 'false', '--trainer.logger', json.dumps(logger),
                '--model.lr', str(lr), '--model.eta_min', str(min(lr, 1e-7))])  # fmt: skip
    rows = list(csv.DictReader(open(Path(cli.trainer.log_dir) / 'metrics.csv')))
    losses = {int(r['epoch']): float(r['val_loss']) for r in rows if r.get('val_loss')}
    assert sorted(losses) == [0, 1, 2]
    if lr == 0:
        assert len(set(losses.values())) == 1, losses  # an exact tie: the rule decides
    epoch = authors_kept_epoch([losses[e] for e in sorted(losses)])
    assert epoch == 2 or lr > 0
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    assert best.name == f'best-epoch{epoch:03d}-loss{losses[epoch]:.4f}.ckpt'
    assert [p.name for p in best.parent.glob('best-*.ckpt')] == [best.name]


# ---------------------------------------------------------------------------------------------- the recipes
ROOTS = {'h5': 'reference_tiles', 'bijie': 'bijie', 'landslide4sense': 'landslide4sense', 'gvlm': 'gvlm'}


@pytest.mark.parametrize('name', REFERENCE)
def test_every_reference_recipe_trains_through_the_cli(name: str, fake_roots: dict[str, Path], tmp_path: Path) -> None:
    dataset = next(v for k, v in ROOTS.items() if name.endswith(f'_{k}.yaml'))
    cli = main(['fit', '--config', name, '--data.init_args.root', str(fake_roots[dataset]), *model_flags(TINY),
                '--data.init_args.tile_size', '64', '--data.init_args.batch_size', '2',
                '--data.init_args.num_workers', '0', '--trainer.accelerator', 'cpu', '--trainer.logger', 'false',
                '--trainer.enable_progress_bar', 'false', '--trainer.default_root_dir', str(tmp_path),
                '--trainer.fast_dev_run', 'true'])  # fmt: skip
    assert cli.trainer.state.finished
    dm = cli.datamodule
    authors = name.startswith('reference/sam_cffnet')
    assert dm.shuffle is (not authors) and dm.drop_last_eval is authors
    assert cli.model.threshold_rule.on_logits is authors
    assert cli.trainer.checkpoint_callback.monitor == ('val_landslide_iou' if authors else 'val_loss')


STRUCTURE = re.compile(r'^\s*(- )?(model|data|trainer|checkpoint|init_args|class_path|logger):')


@pytest.mark.parametrize('name', REFERENCE)
def test_every_reference_option_names_its_source(name: str) -> None:
    """Each value a reference recipe sets carries a comment (the authors' file:line, or why it is a guess)."""
    lines = Path(resolve_config(name)).read_text().splitlines()
    assert lines[0].startswith('# REFERENCE PROTOCOL')
    bare = [
        line
        for line in lines
        if line.strip() and not line.lstrip().startswith('#') and not STRUCTURE.match(line) and '#' not in line
        and 'init_args: {' not in line
    ]  # fmt: skip
    assert not bare, f'{name}: options without a source comment: {bare}'
