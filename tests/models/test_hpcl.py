"""Unit tests of HPCL-Net: terrain stack, DEM branch and fusion, hyper-pixels, queues, momentum encoder, loss."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from sam_cffnet.models import build_model
from sam_cffnet.models.hpcl import (
    ClassQueues,
    ConcatFusion,
    DEMBranch,
    GatedFusion,
    HPCLNet,
    HyperPixelizer,
    hyperpixel_infonce,
    sample_hyperpixels,
    slic_superpixels,
    terrain_channels,
    terrain_stack,
)
from sam_cffnet.tasks.segmentation import SegmentationTask

TINY: dict[str, Any] = {
    'variant': 'vit_tiny',
    'input_size': None,
    'decoder_channels': 64,
    'dem_channels': [8, 16, 16, 16],
    'dem_out_channels': 16,
    'embed_dim': 16,
    'head_hidden': 32,
    'queue_size': 12,
    'samples_per_class': 4,
    'hyperpixel_size': 1,
    'momentum': 0.9,
}


def blob_batch(seed: int = 0, b: int = 2, t: int = 64) -> dict[str, torch.Tensor]:
    """Image, DEM and a mask whose left 32 columns (two 16 px tokens) are landslide."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(b, t, t, dtype=torch.long)
    mask[:, :, : t // 2] = 1
    return {'image': torch.rand(b, 3, t, t, generator=g), 'dem': torch.randn(b, 1, t, t, generator=g), 'mask': mask}


def tiny(**kwargs: Any) -> HPCLNet:
    return build_model('hpcl_net', **{**TINY, **kwargs})  # type: ignore[return-value]


# ---------------------------------------------------------------------- terrain
def test_terrain_stack_on_a_plane_is_exact_everywhere() -> None:
    rows, cols = torch.meshgrid(torch.arange(9.0), torch.arange(11.0), indexing='ij')
    z = (2.0 * cols).view(1, 1, 9, 11)  # rises eastwards, 2 units per pixel of size 2 -> gradient 1
    out = terrain_stack(z, pixel_size=2.0, features=('elevation', 'slope', 'aspect', 'hillshade'))
    assert out.shape == (1, terrain_channels(['elevation', 'slope', 'aspect', 'hillshade']), 9, 11) == (1, 5, 9, 11)
    torch.testing.assert_close(out[0, 0], z[0, 0])
    torch.testing.assert_close(out[0, 1], torch.full((9, 11), math.pi / 4))  # borders included
    torch.testing.assert_close(out[0, 2], torch.full((9, 11), -1.0))  # faces west: sin(270 deg)
    torch.testing.assert_close(out[0, 3], torch.zeros(9, 11), atol=1e-6, rtol=0)
    # Sun in the west (azimuth 270) at 45 deg altitude lights a 45 deg west-facing slope head-on.
    lit = terrain_stack(z, 2.0, ('hillshade',), azimuth=270.0, altitude=45.0)
    torch.testing.assert_close(lit, torch.ones_like(lit))
    # A plane rising southwards (with the rows) faces north: aspect 0 -> (sin, cos) = (0, 1).
    north = terrain_stack(rows.view(1, 1, 9, 11), features=('aspect',))
    torch.testing.assert_close(north[0, 1], torch.ones(9, 11))
    # Flat ground: slope 0, aspect (0, 0), hillshade = sin(altitude).
    flat = terrain_stack(torch.zeros(1, 1, 5, 5), features=('slope', 'aspect', 'hillshade'))
    torch.testing.assert_close(flat[0, :3], torch.zeros(3, 5, 5))
    torch.testing.assert_close(flat[0, 3], torch.full((5, 5), math.sin(math.radians(45))))


def test_terrain_stack_on_a_cone_points_downhill_outwards() -> None:
    n = 41
    rows, cols = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64),
                                indexing='ij')  # fmt: skip
    r = torch.sqrt((rows - 20) ** 2 + (cols - 20) ** 2)
    z = (100 - r).view(1, 1, n, n)  # a cone, slope 1 everywhere but the apex
    out = terrain_stack(z, features=('slope', 'aspect'))
    ring = (r > 3) & (r < 15)
    torch.testing.assert_close(out[0, 0][ring], torch.full_like(out[0, 0][ring], math.pi / 4), atol=0.03, rtol=0)
    # East of the apex the slope faces east (sin 1, cos 0); north of it, north (sin 0, cos 1).
    assert out[0, 1, 20, 30] == pytest.approx(1.0, abs=1e-5) and out[0, 2, 20, 30] == pytest.approx(0.0, abs=1e-5)
    assert out[0, 1, 10, 20] == pytest.approx(0.0, abs=1e-5) and out[0, 2, 10, 20] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match='unknown terrain features'):
        terrain_stack(z, features=('curvature',))


# ---------------------------------------------------------------------- DEM branch and fusion
def test_dem_branch_layouts_and_shapes() -> None:
    bijie = DEMBranch(1, 0, ('elevation', 'slope', 'aspect', 'hillshade'), channels=(8, 8), out_channels=4)
    assert bijie.cnn_in_channels == 5
    assert bijie(torch.randn(2, 1, 32, 32), (8, 8)).shape == (2, 4, 8, 8)
    assert bijie(torch.randn(2, 1, 32, 32), (5, 5)).shape == (2, 4, 5, 5)  # resized to any grid
    l4s = DEMBranch(2, 1, ('elevation', 'aspect', 'hillshade'), channels=(8,), out_channels=4)
    assert l4s.cnn_in_channels == 1 + 4  # slope kept + elevation, aspect (2), hillshade
    x = torch.randn(1, 2, 16, 16)
    torch.testing.assert_close(l4s.terrain(x)[:, :2], x)  # slope, then the elevation itself
    with pytest.raises(ValueError, match='dem_in_channels'):
        l4s(torch.randn(1, 1, 16, 16), (4, 4))


@pytest.mark.parametrize('cls', [ConcatFusion, GatedFusion])
def test_fusion_starts_as_the_optical_identity(cls: type) -> None:
    fusion = cls(8, 4)
    optical, dem = torch.randn(2, 8, 4, 4), torch.randn(2, 4, 4, 4)
    torch.testing.assert_close(fusion(optical, dem), optical)


# ---------------------------------------------------------------------- hyper-pixels
def test_grid_hyperpixel_labels_purity_and_boundary() -> None:
    mask = torch.zeros(1, 64, 64, dtype=torch.long)
    mask[:, :, :40] = 1  # token columns 0, 1 landslide; column 2 (32..48) half; column 3 background
    hp = HyperPixelizer('grid', size=1, min_purity=0.75, boundary_width=1)(mask, (4, 4))
    frac = hp.fraction.view(4, 4)
    torch.testing.assert_close(frac[0], torch.tensor([1.0, 1.0, 0.5, 0.0]))
    assert hp.labels.view(4, 4)[0].tolist() == [1, 1, 1, 0]
    assert hp.valid.view(4, 4)[0].tolist() == [True, True, False, True]  # the half-half column is too mixed
    assert hp.boundary.view(4, 4)[0].tolist() == [False, False, True, False]  # band of 1 px around x = 40
    wide = HyperPixelizer('grid', size=1, boundary_width=16)(mask, (4, 4))
    assert wide.boundary.view(4, 4)[0].tolist() == [False, True, True, True]
    # Pooling: a 2 x 2 grid of 2 x 2 token patches.
    hp2 = HyperPixelizer('grid', size=2)(mask, (4, 4))
    feats = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(hp2.pool(feats)[0, :, 0], torch.tensor([2.5, 4.5, 10.5, 12.5]))


def test_sampling_prefers_boundary_hyperpixels() -> None:
    mask = torch.zeros(2, 64, 64, dtype=torch.long)
    mask[:, :, :32] = 1
    hp = HyperPixelizer('grid', size=1, boundary_width=4)(mask, (4, 4))
    near = hp.boundary.flatten()
    assert int(near.sum()) == 16  # token columns 1 and 2 of both images
    idx = sample_hyperpixels(hp, per_class=4, boundary_ratio=1.0, generator=torch.Generator().manual_seed(0))
    assert len(idx) == 8 and bool(near[idx].all())
    assert hp.labels.flatten()[idx].sum() == 4  # 4 per class
    idx = sample_hyperpixels(hp, per_class=4, boundary_ratio=0.0)
    assert not bool(near[idx].any())
    idx = sample_hyperpixels(hp, per_class=12, boundary_ratio=1.0)  # only 8 near per class: 4 far fill the gap
    assert len(idx) == 24 and int(near[idx].sum()) == 16
    idx = sample_hyperpixels(hp, per_class=16, boundary_ratio=0.5)  # 8 near + 8 far per class: all 32 used
    assert len(idx) == 32 and len(set(idx.tolist())) == 32


def test_superpixels_follow_colour_edges_and_pool_exactly() -> None:
    image = torch.zeros(1, 3, 32, 32)
    image[:, :, :, 13:] = 1.0  # a vertical colour edge off the seed grid
    labels = slic_superpixels(image, num_segments=16, compactness=0.2)
    left, right = set(labels[0, :, :13].flatten().tolist()), set(labels[0, :, 13:].flatten().tolist())
    assert not left & right
    mask = (image[:, 0] > 0.5).long()
    hp = HyperPixelizer('superpixel', num_superpixels=16, superpixel_resolution=32, compactness=0.2)(
        mask, (4, 4), image
    )
    assert hp.weights is not None and hp.weights.shape == (1, 16, 16)
    assert set(hp.fraction[hp.valid].tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(
        hp.pool(torch.full((1, 3, 4, 4), 7.0))[hp.valid[0][None]], torch.full((int(hp.valid.sum()), 3), 7.0)
    )


# ---------------------------------------------------------------------- queues and loss
def test_queue_fills_wraps_and_keeps_the_newest() -> None:
    q = ClassQueues(2, size=5, dim=2)
    q.push(torch.tensor([[1.0, 0], [2, 0], [3, 0]]), torch.tensor([1, 1, 0]))
    assert q.count.tolist() == [1, 2] and q.ptr.tolist() == [1, 2]
    keys, labels = q.stored()
    assert labels.tolist() == [0, 1, 1] and keys[:, 0].tolist() == [3, 1, 2]
    q.push(torch.arange(4.0, 8.0)[:, None].expand(4, 2), torch.ones(4, dtype=torch.long))  # 2 + 4 > 5: wraps
    assert q.count.tolist() == [1, 5] and q.ptr.tolist() == [1, 1]
    assert q.keys[1, :, 0].tolist() == [7.0, 2.0, 4.0, 5.0, 6.0]  # key 1 (the oldest) was overwritten by 7
    q.push(torch.arange(4.0, 10.0)[:, None].expand(6, 2), torch.ones(6, dtype=torch.long))
    assert sorted(q.keys[1, :, 0].tolist()) == [5.0, 6.0, 7.0, 8.0, 9.0]  # the oldest three were overwritten
    q.push(torch.arange(10.0, 22.0)[:, None].expand(12, 2), torch.ones(12, dtype=torch.long))  # more than size
    assert sorted(q.keys[1, :, 0].tolist()) == [17.0, 18.0, 19.0, 20.0, 21.0]
    assert {'keys', 'ptr', 'count'} <= set(q.state_dict())


def test_infonce_matches_a_hand_computation() -> None:
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2]]), dim=-1)
    k = torch.nn.functional.normalize(torch.tensor([[0.9, 0.1]]), dim=-1)
    bank = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.3]]), dim=-1)
    lab = torch.tensor([1])
    bank_lab = torch.tensor([1, 0, 0])
    s = torch.cat([q @ k.t(), q @ bank.t()], dim=1)[0] / 0.5
    # class: positives = own key and bank[0]; all four are candidates.
    expected = -((s[0] - torch.logsumexp(s, 0)) + (s[1] - torch.logsumexp(s, 0))) / 2
    got = hyperpixel_infonce(q, lab, k, lab, bank, bank_lab, 0.5, 'class')
    torch.testing.assert_close(got, expected)
    # self: positive = own key; negatives = other-class entries only (bank[0] is excluded).
    expected_self = torch.logsumexp(s[[0, 2, 3]], 0) - s[0]
    torch.testing.assert_close(hyperpixel_infonce(q, lab, k, lab, bank, bank_lab, 0.5, 'self'), expected_self)
    # no negative anywhere: zero, still differentiable
    qq = q.clone().requires_grad_(True)
    zero = hyperpixel_infonce(qq, lab, k, lab, bank[:1], bank_lab[:1], 0.5, 'class')
    assert zero.item() == 0.0 and zero.requires_grad


# ---------------------------------------------------------------------- the model
def test_momentum_encoder_follows_the_ema_rule_and_gets_no_gradients() -> None:
    torch.manual_seed(0)
    model = tiny(fusion='gated').train()
    assert model.momentum is not None
    online = {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith('momentum.')}
    before = {n: p.detach().clone() for n, p in model.momentum.named_parameters()}
    for name in before:
        assert torch.equal(before[name], online[name])  # the copy starts equal
    with torch.no_grad():  # move the online weights so that the EMA has something to follow
        for n, p in model.named_parameters():
            if p.requires_grad and not n.startswith('encoder.'):
                p.add_(0.5)
    online = {n: p.detach().clone() for n, p in model.named_parameters()}
    logits, aux = model.training_outputs(blob_batch())
    m = model.momentum_value
    for name, old in before.items():
        torch.testing.assert_close(model.momentum.get_parameter(name), m * old + (1 - m) * online[name])
    (torch.nn.functional.binary_cross_entropy_with_logits(logits, blob_batch()['mask'][:, None].float())
     + aux['contrastive_loss']).backward()  # fmt: skip
    assert all(not p.requires_grad and p.grad is None for p in model.momentum.parameters())
    assert model.head is not None and all(p.grad is not None for p in model.head.parameters())
    assert model.dem_branch is not None and any(p.grad is not None for p in model.dem_branch.parameters())
    task = SegmentationTask(build_model('hpcl_net', **{**TINY, 'fusion': 'gated'}), scheduler='none')
    optimized = {id(p) for group in task.configure_optimizers()['optimizer'].param_groups for p in group['params']}
    assert optimized and not optimized & {id(p) for p in task.model.momentum.parameters()}  # type: ignore[union-attr]


def test_training_fills_the_queues_and_inference_does_not() -> None:
    torch.manual_seed(0)
    model = tiny(fusion='concat').train()
    assert model.queues is not None and model.queues.count.tolist() == [0, 0]
    model(blob_batch()['image'], blob_batch()['dem'])
    assert model.queues.count.tolist() == [0, 0]  # forward = inference path: no contrastive work
    for step in range(3):
        _, aux = model.training_outputs(blob_batch(step))
        assert torch.isfinite(aux['contrastive_loss'])
    assert model.queues.count.tolist() == [12, 12]  # 4 per class and step, queue of 12: full
    _, aux = model.training_outputs(blob_batch(3))
    assert model.queues.count.tolist() == [12, 12] and model.queues.ptr.tolist() == [4, 4]  # wrapped
    assert aux['contrastive_loss'] > 0


def test_queues_and_momentum_survive_a_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sam = tmp_path / 'sam_tiny.pth'
    vit = tiny(fusion='gated').encoder.vit.state_dict()
    torch.save({f'image_encoder.{k}': v for k, v in vit.items()}, sam)
    task = SegmentationTask(build_model('hpcl_net', **{**TINY, 'fusion': 'gated', 'sam_checkpoint': str(sam)}))
    task.model.train()
    for step in range(2):
        task.model.training_outputs(blob_batch(step))
    ckpt: dict[str, Any] = {'state_dict': task.state_dict(), 'hyper_parameters': dict(task.hparams)}
    task.on_save_checkpoint(ckpt)
    saved = ckpt['state_dict']
    assert not any(k.startswith('model.encoder.vit.') for k in saved)  # frozen SAM weights not written
    assert {'model.queues.keys', 'model.queues.ptr', 'model.queues.count'} <= set(saved)
    assert any(k.startswith('model.momentum.dem_branch.') for k in saved)
    path = tmp_path / 'hpcl.ckpt'
    torch.save(ckpt, path)
    loaded = SegmentationTask.from_checkpoint(path)
    for key in ('queues.keys', 'queues.ptr', 'queues.count'):
        assert torch.equal(loaded.model.get_buffer(key), task.model.get_buffer(key))
    for (name, p), (_, q) in zip(loaded.model.momentum.named_parameters(), task.model.momentum.named_parameters(),  # type: ignore[union-attr]
                                 strict=True):  # fmt: skip
        assert torch.equal(p, q), name
    assert loaded.model.queues.count.tolist() == [8, 8]  # type: ignore[union-attr]


def _one_step(model: HPCLNet, batch: dict[str, torch.Tensor]) -> tuple[float, dict[str, torch.Tensor]]:
    from sam_cffnet.losses import BCEDiceLoss

    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    logits, aux = model.training_outputs(batch)
    loss = BCEDiceLoss()(logits, batch['mask']) + sum(aux.values(), torch.zeros(()))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach()), {n: p.detach().clone() for n, p in model.named_parameters()}


def test_weight_zero_trains_exactly_like_the_fusion_only_model() -> None:
    fusion = 'gated'  # concat runs through the same code path (and through the CLI tests)
    results = {}
    for name, kwargs in {'fusion_only': {'hpcl': False}, 'weight0': {'hpcl': True, 'contrastive_weight': 0.0},
                         'hpcl': {'hpcl': True, 'contrastive_weight': 1.0}}.items():  # fmt: skip
        torch.manual_seed(0)
        model = tiny(fusion=fusion, **kwargs)
        steps = [_one_step(model, blob_batch(i)) for i in range(2)]
        results[name] = steps
    for (loss_a, params_a), (loss_b, params_b) in zip(results['fusion_only'], results['weight0'], strict=True):
        assert loss_a == loss_b
        for n, p in params_a.items():
            assert torch.equal(p, params_b[n]), n
    assert results['hpcl'][0][0] != results['fusion_only'][0][0]  # the contrastive term does change training
    seg_params = results['fusion_only'][-1][1]
    assert any(not torch.equal(p, results['hpcl'][-1][1][n]) for n, p in seg_params.items())


def test_model_options_and_errors() -> None:
    torch.manual_seed(0)
    none = tiny(fusion='none', contrast_source='decoder')
    assert none.input_keys == ('image',) and none.dem_branch is None
    _, aux = none.train().training_outputs(blob_batch())
    assert torch.isfinite(aux['contrastive_loss'])
    assert {n.split('.')[0] for n, _ in none.momentum.named_parameters()} == {'cffm', 'merge', 'head'}  # type: ignore[union-attr]
    # The decoder path used for 'decoder' contrast gives the same logits as the CFFD's own forward.
    none.eval()
    b = blob_batch()
    out = none.encoder(b['image'])
    torch.testing.assert_close(none._decode(out.features, out.image, True)[0], none.decoder(out.features, out.image))
    with pytest.raises(ValueError, match="contrast_source='decoder'"):
        tiny(fusion='none')
    with pytest.raises(ValueError, match='dem_mode: separate'):
        tiny(fusion='gated')(b['image'])
    sp = tiny(fusion='concat', hyperpixel_mode='superpixel', num_superpixels=16, superpixel_resolution=32)
    _, aux = sp.train().training_outputs(blob_batch())
    assert torch.isfinite(aux['contrastive_loss'])
    assert 'momentum copy (not trained)' in sp.describe()['parts']
