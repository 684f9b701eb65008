"""Tests for the prompt-free SAM mask decoder and SAM's neck (TransLandSeg's decoder)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

from sam_cffnet.models.decoders.sam_mask_decoder import (
    PromptFreeMaskDecoder,
    build_sam_neck,
    load_sam_neck,
    sam_neck_filter,
)

#: SAM ViT-L's mask decoder (4,058,340) plus the 256-d no-mask embedding.
SAM_DECODER_PARAMS = 4_058_340


def official_sam_state(embed_dim: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in the official SAM checkpoint layout (neck + prompt encoder + mask decoder)."""
    torch.manual_seed(seed)
    prompt = PromptEncoder(embed_dim=256, image_embedding_size=(4, 4), input_image_size=(64, 64), mask_in_chans=16)
    decoder = MaskDecoder(transformer_dim=256, transformer=TwoWayTransformer(2, 256, 8, 2048))
    neck = build_sam_neck(embed_dim)
    state = {f'image_encoder.neck.{k}': v for k, v in neck.state_dict().items()}
    state.update({f'prompt_encoder.{k}': v for k, v in prompt.state_dict().items()})
    state.update({f'mask_decoder.{k}': v for k, v in decoder.state_dict().items()})
    return state


def test_parameter_count_matches_sam() -> None:
    dec = PromptFreeMaskDecoder()
    assert sum(p.numel() for p in dec.mask_decoder.parameters()) == SAM_DECODER_PARAMS
    assert sum(p.numel() for p in dec.parameters()) == SAM_DECODER_PARAMS + 256
    # The positional encoding is a buffer, never trained.
    assert 'pe_layer.positional_encoding_gaussian_matrix' in dict(dec.named_buffers())


def test_batched_output_equals_sam_decoder_image_by_image() -> None:
    torch.manual_seed(0)
    dec = PromptFreeMaskDecoder().eval()
    x = torch.randn(3, 256, 4, 6)
    out = dec(x)
    assert out.shape == (3, 1, 16, 24)
    pe = dec.image_pe((4, 6))
    for i in range(3):
        dense = dec.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, 4, 6)
        ref, _ = dec.mask_decoder(x[i : i + 1], pe, torch.empty(1, 0, 256), dense, multimask_output=False)
        torch.testing.assert_close(out[i : i + 1], ref, atol=1e-5, rtol=1e-5)
    # Images do not leak into each other.
    torch.testing.assert_close(dec(x[1:2]), out[1:2], atol=1e-5, rtol=1e-5)


def test_backward_reaches_embedding_and_used_decoder_parts() -> None:
    dec = PromptFreeMaskDecoder()
    x = torch.randn(2, 256, 4, 4, requires_grad=True)
    dec(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert dec.no_mask_embed.weight.grad is not None
    assert dec.mask_decoder.output_hypernetworks_mlps[0].layers[0].weight.grad is not None


def test_wrong_input_raises() -> None:
    with pytest.raises(ValueError, match='B x 256 x h x w'):
        PromptFreeMaskDecoder()(torch.randn(1, 64, 4, 4))


def test_load_sam_weights_from_official_checkpoint(tmp_path: Path) -> None:
    state = official_sam_state()
    path = tmp_path / 'sam_tiny.pth'
    torch.save(state, path)
    dec = PromptFreeMaskDecoder()
    loaded = dec.load_sam_weights(path)
    assert dec.loaded_from == 'decoder+prompt'
    assert 'pe_layer.positional_encoding_gaussian_matrix' in loaded and 'no_mask_embed.weight' in loaded
    for k, v in dec.mask_decoder.state_dict().items():
        assert torch.equal(v, state[f'mask_decoder.{k}'])
    assert torch.equal(
        dec.pe_layer.positional_encoding_gaussian_matrix,
        state['prompt_encoder.pe_layer.positional_encoding_gaussian_matrix'],
    )
    assert torch.equal(dec.no_mask_embed.weight, state['prompt_encoder.no_mask_embed.weight'])
    assert dec.no_mask_embed.weight.requires_grad


def test_reference_random_prompt_pe_keeps_random_pe() -> None:
    state = official_sam_state()
    dec = PromptFreeMaskDecoder()
    pe_before = dec.pe_layer.positional_encoding_gaussian_matrix.clone()
    embed_before = dec.no_mask_embed.weight.detach().clone()
    loaded = dec.load_sam_weights(state, reference_random_prompt_pe=True)
    assert dec.loaded_from == 'decoder'
    assert all(k.startswith('mask_decoder.') for k in loaded)
    assert torch.equal(dec.pe_layer.positional_encoding_gaussian_matrix, pe_before)
    assert torch.equal(dec.no_mask_embed.weight, embed_before)
    assert torch.equal(dec.mask_decoder.iou_token.weight, state['mask_decoder.iou_token.weight'])


def test_load_errors_are_clear(tmp_path: Path) -> None:
    dec = PromptFreeMaskDecoder()
    with pytest.raises(ValueError, match='no SAM mask decoder'):
        dec.load_sam_weights({'image_encoder.patch_embed.proj.weight': torch.zeros(1)})
    state = official_sam_state()
    del state['prompt_encoder.no_mask_embed.weight']
    with pytest.raises(ValueError, match='reference_random_prompt_pe=True'):
        dec.load_sam_weights(state)
    small = PromptFreeMaskDecoder(transformer_dim=64, transformer_mlp_dim=128, transformer_heads=2)
    with pytest.raises(ValueError, match='has shape'):
        small.load_sam_weights(official_sam_state())
    with pytest.raises(FileNotFoundError):
        dec.load_sam_weights(tmp_path / 'missing.pth')


def test_sam_neck_keys_and_loading() -> None:
    state = official_sam_state(embed_dim=64)
    neck = build_sam_neck(64)
    assert set(neck.state_dict()) == {'0.weight', '1.weight', '1.bias', '2.weight', '3.weight', '3.bias'}
    load_sam_neck(neck, state)
    for k, v in neck.state_dict().items():
        assert torch.equal(v, state[f'image_encoder.neck.{k}'])
    assert sam_neck_filter({'neck.0.weight': torch.zeros(1)}) == {'0.weight': torch.zeros(1)}
    assert neck(torch.randn(2, 64, 4, 4)).shape == (2, 256, 4, 4)
    with pytest.raises(ValueError, match='another SAM size'):
        load_sam_neck(build_sam_neck(32), state)
    with pytest.raises(ValueError, match='no SAM neck'):
        load_sam_neck(neck, {'mask_decoder.x': torch.zeros(1)})
