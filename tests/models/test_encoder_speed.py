"""Encoder speed options: SDPA attention equals the reference, bf16 and channels-last run, state dict unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

from sam_cffnet.models.encoders.attention import SDPAAttention, configure_encoder_speed, sdpa_attention
from sam_cffnet.models.encoders.sam import SAMEncoder
from sam_cffnet.models.sam_cffnet import SAMCFFNet


def _encoder(size: int | None, **kwargs: object) -> SAMEncoder:
    enc = SAMEncoder('vit_tiny', input_size=size, **kwargs)  # type: ignore[arg-type]
    with torch.no_grad():
        for name, p in enc.vit.named_parameters():
            if 'rel_pos' in name:  # zero at init: randomize so the bias is exercised
                p.normal_(0, 0.5)
    return enc


@pytest.mark.parametrize('size', [64, 128])
def test_sdpa_matches_reference_fp32(size: int) -> None:
    enc = _encoder(size)
    x = torch.rand(2, 3, size, size)
    keys = list(enc.state_dict())
    ref = enc(x).features
    configure_encoder_speed(enc, attention='sdpa')
    assert all(type(b.attn) is SDPAAttention for b in enc.vit.blocks)
    assert list(enc.state_dict()) == keys
    out = enc(x).features
    assert max((a - b).abs().max().item() for a, b in zip(out, ref, strict=True)) < 1e-4
    configure_encoder_speed(enc, attention='reference')
    assert all(type(b.attn) is Attention for b in enc.vit.blocks)


def test_chunked_bias_matches_one_call() -> None:
    q, k, v = (torch.randn(2, 3, 20, 8) for _ in range(3))
    rel_h, rel_w = torch.randn(2, 3, 20, 4), torch.randn(2, 3, 20, 5)
    full = sdpa_attention(q, k, v, rel_h, rel_w)
    chunked = sdpa_attention(q, k, v, rel_h, rel_w, mask_budget=2 * 3 * 20 * 3)  # 3 queries per call
    assert torch.allclose(full, chunked, atol=1e-6)


def test_bf16_and_channels_last_run() -> None:
    enc = _encoder(64)
    x = torch.rand(2, 3, 64, 64)
    ref = enc(x).features
    fast = copy.deepcopy(enc)
    configure_encoder_speed(fast, attention='sdpa', autocast='bf16', channels_last=True)
    out = fast(x).features
    assert all(f.dtype == torch.float32 and f.shape == r.shape for f, r in zip(out, ref, strict=True))
    scale = max(r.abs().max().item() for r in ref)
    assert max((a - b).abs().max().item() for a, b in zip(out, ref, strict=True)) < 0.05 * scale
    assert fast.fingerprint() == enc.fingerprint()
    with pytest.raises(ValueError, match='attention'):
        configure_encoder_speed(enc, attention='flash')  # type: ignore[arg-type]


def test_options_pass_through_model_args() -> None:
    model = SAMCFFNet(variant='vit_tiny', input_size=None, attention='sdpa', autocast='bf16', decoder_channels=64)
    assert model.encoder.speed_options.attention == 'sdpa' and model.encoder.speed_options.autocast == 'bf16'
    feats = model.encoder(torch.rand(2, 3, 64, 64)).features
    assert all(f.dtype == torch.float32 for f in feats)
    # precomputed features of the wrong shape are refused with a clear error
    with torch.no_grad():
        out = model.encoder(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match='shape'):
        model(torch.rand(2, 3, 64, 64), [f[:, :, :2] for f in out.features])
