"""Decoder ablations (Models I-IV): the PSP / ASPP / LawinASPP heads and the SAM models on SAM-CFFNet's features."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

from sam_cffnet.models import build_model
from sam_cffnet.models.decoders.aspp_head import ASPPHead
from sam_cffnet.models.decoders.cffd import CFFD
from sam_cffnet.models.decoders.lawin import (
    LawinAttention,
    LawinHead,
    lawin_context,
    window_partition,
    window_unpartition,
)
from sam_cffnet.models.decoders.psp import PooledBatchNorm2d, PSPHead
from sam_cffnet.models.decoders.sam_mask_decoder import build_sam_neck
from sam_cffnet.models.encoders.sam import SAMEncoder
from sam_cffnet.models.sam_ablations import FeatureNeck

ABLATIONS = ['sam_mask_decoder', 'sam_psp', 'sam_aspp', 'sam_lawin']
TINY = {'variant': 'vit_tiny', 'input_size': 128}  # 8 x 8 feature grid (a whole Lawin patch)


@pytest.fixture(scope='module')
def sam_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random vit_tiny checkpoint in the official SAM layout (encoder + neck + prompt encoder + mask decoder)."""
    torch.manual_seed(1)
    enc = SAMEncoder('vit_tiny')
    prompt = PromptEncoder(embed_dim=256, image_embedding_size=(8, 8), input_image_size=(128, 128), mask_in_chans=16)
    decoder = MaskDecoder(transformer_dim=256, transformer=TwoWayTransformer(2, 256, 8, 2048))
    state = {f'image_encoder.{k}': v for k, v in enc.vit.state_dict().items()}
    state.update({f'image_encoder.neck.{k}': v for k, v in build_sam_neck(64).state_dict().items()})
    state.update({f'prompt_encoder.{k}': v for k, v in prompt.state_dict().items()})
    state.update({f'mask_decoder.{k}': v for k, v in decoder.state_dict().items()})
    path = tmp_path_factory.mktemp('sam') / 'sam_vit_tiny.pth'
    torch.save(state, path)
    return path


# ------------------------------------------------------------------------------------------------ Lawin
def naive_context(x: torch.Tensor, patch: int, ratio: int) -> torch.Tensor:
    """Lawin's own code: unfold (r P) x (r P) windows with stride P, then average-pool each to P x P."""
    b, c = x.shape[:2]
    cols = F.unfold(x, kernel_size=patch * ratio, stride=patch, padding=(ratio - 1) * patch // 2)
    cols = (
        cols.view(b, c, patch * ratio, patch * ratio, -1).permute(0, 4, 1, 2, 3).reshape(-1, c, *([patch * ratio] * 2))
    )
    return F.adaptive_avg_pool2d(cols, patch)


@pytest.mark.parametrize(('patch', 'ratio'), [(8, 8), (8, 4), (8, 2), (4, 2), (4, 4)])
def test_lawin_context_equals_unfold_and_pool(patch: int, ratio: int) -> None:
    x = torch.randn(2, 3, 2 * patch, 3 * patch)
    torch.testing.assert_close(lawin_context(x, patch, ratio), naive_context(x, patch, ratio))


def test_window_partition_round_trip() -> None:
    x = torch.randn(2, 5, 16, 24)
    win = window_partition(x, 8)
    assert win.shape == (2 * 2 * 3, 5, 8, 8)
    torch.testing.assert_close(win[3], x[0, :, 8:16, 0:8])  # row-major window order
    torch.testing.assert_close(window_unpartition(win, 8, 2, (16, 24)), x)


def test_lawin_attention_is_multi_head_attention() -> None:
    attn = LawinAttention(channels=8, heads=2, patch=2, reduction=2)
    q, ctx = torch.randn(3, 8, 2, 2), torch.randn(3, 8, 2, 2)
    torch.testing.assert_close(attn(q, ctx), q)  # conv_out starts at zero: every branch starts as the identity
    torch.nn.init.normal_(attn.conv_out.weight)
    # reference, as Lawin's code: one nn.Linear over the P^2 positions per head (channel group), added to the context
    n = 3
    flat = ctx.reshape(n, 8, 4)
    mixed = torch.cat(
        [F.linear(flat[:, 4 * h : 4 * h + 4], attn.position_mixing[h], attn.position_bias[h]) for h in (0, 1)], 1
    )
    mixed = ctx + mixed.reshape(n, 8, 2, 2)
    g, t, p = (
        m(x).reshape(n, 2, 2, 4).transpose(-1, -2) for m, x in ((attn.g, mixed), (attn.theta, q), (attn.phi, mixed))
    )
    y = F.scaled_dot_product_attention(t, p, g)  # n x heads x 4 x d
    expected = q + attn.conv_out(y.transpose(-1, -2).reshape(n, 4, 2, 2))
    torch.testing.assert_close(attn(q, ctx), expected)


def test_heads_shapes_and_batch_of_one() -> None:
    heads = [
        PSPHead(16, 8),
        ASPPHead(16, 8),
        LawinHead(16, 16, patch=4, heads=(4, 2, 1), ratios=(4, 2, 1)),
    ]
    for head in heads:
        for size in [(8, 8), (5, 7)]:  # Lawin pads 5 x 7 to whole patches and crops back
            head.train()
            out = head(torch.randn(1, 16, *size))  # a training batch of one must not crash
            assert out.shape == (1, 1, *size)
            out.sum().backward()


def test_pooled_batchnorm_uses_running_stats_for_one_value() -> None:
    bn = PooledBatchNorm2d(3)
    bn.running_mean.fill_(0.5)
    x = torch.randn(1, 3, 1, 1)
    out = bn.train()(x)
    torch.testing.assert_close(out, bn.eval()(x))
    assert torch.equal(bn.running_mean, torch.full((3,), 0.5))  # not updated
    bn.train()(torch.randn(2, 3, 1, 1))
    assert not torch.equal(bn.running_mean, torch.full((3,), 0.5))  # normal BatchNorm otherwise


# ------------------------------------------------------------------------------------------------ SAM models
def test_cffm_features_are_sam_cffnets() -> None:
    # ViT-L sizes: the shared neck is SAM-CFFNet's CFFM (3,603,148) + its 1x1 merge conv (262,400)
    assert sum(p.numel() for p in FeatureNeck(1024).parameters()) == 3_603_148 + 262_400
    torch.manual_seed(0)
    cffd, neck = CFFD(32, 64).eval(), FeatureNeck(32, 64).eval()
    neck.cffm.load_state_dict(cffd.cffm.state_dict())
    neck.merge.load_state_dict(cffd.merge[0].state_dict())
    feats = [torch.randn(2, 32, 4, 4) for _ in range(4)]
    with torch.no_grad():
        torch.testing.assert_close(neck(feats), cffd.merge[0](torch.cat(cffd.cffm(feats), dim=1)))
    assert neck(feats).shape == (2, 64, 4, 4)


@pytest.mark.parametrize('name', ABLATIONS)
def test_forward_backward_frozen_encoder(name: str) -> None:
    args = {'head_channels': 32, 'heads': (8, 4, 2)} if name == 'sam_lawin' else {}
    model = build_model(name, in_channels=4, band_indices=[2, 1, 0], **TINY, **args).train()
    assert not model.encoder.vit.training
    x = torch.rand(2, 4, 64, 64)
    out = model(x)
    assert out.shape == (2, 1, 64, 64)
    out.mean().backward()
    assert all(not p.requires_grad and p.grad is None for p in model.encoder.vit.parameters())
    trainable = [p for p in model.decoder.parameters() if p.requires_grad]
    with_grad = [p for p in trainable if p.grad is not None]
    # Model I: SAM's IoU head and multimask tokens are kept for weight loading but never used
    assert len(with_grad) > (0.7 if name == 'sam_mask_decoder' else 0.99) * len(trainable)
    assert model(torch.rand(1, 4, 48, 48)).shape == (1, 1, 48, 48)  # any tile: resized to the encoder input


@pytest.mark.parametrize('features', ['last', 'sam_neck'])
def test_feature_variants(features: str, sam_checkpoint: Path) -> None:
    model = build_model('sam_psp', features=features, sam_checkpoint=str(sam_checkpoint), **TINY)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    keys = model.external_state_keys()
    assert keys and all(k in model.state_dict() for k in keys)
    if features == 'sam_neck':
        state = torch.load(sam_checkpoint, weights_only=True)
        neck = model.decoder.neck.neck
        assert torch.equal(neck[0].weight, state['image_encoder.neck.0.weight'])
        assert not any(p.requires_grad for p in neck.parameters())
        assert 'decoder.neck.neck.0.weight' in keys
    else:
        assert not any(k.startswith('decoder.') for k in keys)
    with pytest.raises(ValueError, match='features must be'):
        build_model('sam_psp', features='all', **TINY)


def test_model_i_loads_sams_decoder(sam_checkpoint: Path) -> None:
    state = torch.load(sam_checkpoint, weights_only=True)
    model = build_model('sam_mask_decoder', sam_checkpoint=str(sam_checkpoint), **TINY)
    dec = model.decoder.head
    assert dec.loaded_from == 'decoder+prompt'
    assert torch.equal(dec.mask_decoder.iou_token.weight, state['mask_decoder.iou_token.weight'])
    assert torch.equal(dec.no_mask_embed.weight, state['prompt_encoder.no_mask_embed.weight'])
    assert all(p.requires_grad for p in dec.parameters())  # the decoder is fine-tuned
    fresh = build_model('sam_mask_decoder', sam_checkpoint=str(sam_checkpoint), load_sam_decoder=False, **TINY)
    assert fresh.decoder.head.loaded_from is None
