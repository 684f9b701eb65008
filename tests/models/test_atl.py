"""Tests for TransLandSeg's ATL modules (frequency branch, prompt ATLs, space adapter)."""

from __future__ import annotations

import math

import pytest
import torch

from sam_cffnet.models.adapters.atl import ATL_KINDS, PromptATL, SpaceATL, build_atl, highpass_fft, lowfreq_square
from sam_cffnet.models.encoders.sam import SAMEncoder


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------- frequency branch
def test_lowfreq_square_bounds() -> None:
    # 1024 px, rate 0.25: the central 512 x 512 of the shifted spectrum, a quarter of it.
    assert lowfreq_square(1024, 1024, 0.25) == (256, 768, 256, 768)
    assert lowfreq_square(64, 64, 0.25) == (16, 48, 16, 48)
    r0, r1, c0, c1 = lowfreq_square(1024, 1024, 0.25)
    assert (r1 - r0) * (c1 - c0) / 1024**2 == 0.25
    assert lowfreq_square(64, 64, 0.0) == (32, 32, 32, 32)


def test_highpass_removes_exactly_the_low_frequency_square() -> None:
    n = 64
    y, x = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing='ij')
    low = 3.0 * torch.cos(2 * math.pi * (3 * x + 5 * y) / n) + 7.0  # DC and (3, 5): inside the removed square
    high = torch.cos(2 * math.pi * (20 * x + 2 * y) / n) + 0.5 * torch.sin(2 * math.pi * 24 * y / n)  # outside
    img = (low + high).expand(2, 3, n, n).clone()

    out = highpass_fft(img, 0.25, absolute=False)
    torch.testing.assert_close(out, high.expand_as(out), atol=1e-10, rtol=0)

    # On any real image, frequency by frequency: the square is removed and the rest kept. The reference takes the
    # real part of the inverse FFT, which symmetrises the filter: H(k) = (keep(k) + keep(-k)) / 2, so only the
    # square's one-sided boundary row/column (k = -n/4, which has no partner inside the square) is halved.
    r0, r1, c0, c1 = lowfreq_square(n, n, 0.25)
    keep = torch.ones(n, n, dtype=torch.float64)
    keep[r0:r1, c0:c1] = 0
    mirror = (n - torch.arange(n)) % n  # shifted index of -k
    filt = (keep + keep[mirror][:, mirror]) / 2
    assert filt[r0 + 1 : r1, c0 + 1 : c1].abs().max() == 0  # the square, bar its one-sided edge, is removed
    side = r1 - r0
    # Kept completely: everything outside the square and its mirror (two side x side squares offset by one).
    assert (filt == 1).sum() == n * n - (2 * side**2 - (side - 1) ** 2)
    rnd = torch.rand(2, 3, n, n, dtype=torch.float64)
    spec_in = torch.fft.fftshift(torch.fft.fft2(rnd), dim=(-2, -1))
    spec_out = torch.fft.fftshift(torch.fft.fft2(highpass_fft(rnd, 0.25, absolute=False)), dim=(-2, -1))
    torch.testing.assert_close(spec_out, spec_in * filt, atol=1e-9, rtol=1e-9)

    # The reference takes the absolute value; dtype is kept (the FFT itself runs in float32).
    torch.testing.assert_close(highpass_fft(img.float()), high.abs().float().expand(2, 3, n, n), atol=1e-5, rtol=0)
    assert highpass_fft(img.bfloat16()).dtype == torch.bfloat16


# ---------------------------------------------------------------------- parameter counts (ViT-L)
def test_reference_atl_parameter_count_vit_l() -> None:
    atl = PromptATL(embed_dim=1024, depth=24, dim=32, kind='mlp')
    assert n_params(atl.embedding_proj) == 32_800
    assert n_params(atl.shared_proj) == 33_792
    assert n_params(atl.blocks) == 24 * 1_056
    assert n_params(atl.handcrafted_proj) == 24_608
    assert n_params(atl) == 116_544


def test_variant_parameter_counts_vit_l() -> None:
    with torch.device('meta'):
        counts = {k: n_params(build_atl(k, 1024, 24)) for k in ATL_KINDS}
        assert counts == {'mlp': 116_544, 'mlp2': 141_888, 'conv': 953_664, 'space': 37_853_184}
        # The ablation switches do not change the size of the space adapter.
        assert n_params(build_atl('space', 1024, 24, space_skip=False, space_location='pre_block')) == counts['space']
        assert n_params(build_atl('space', 1024, 24, space_conv_steps=0)) == 24 * (262_400 + 263_168)


def test_reference_initialisation() -> None:
    torch.manual_seed(0)
    atl = PromptATL(embed_dim=1024, depth=24)
    for m in atl.modules():
        if isinstance(m, torch.nn.Linear):
            assert torch.all(m.bias == 0)
            assert abs(m.weight.std().item() - 0.02) < 0.003
    assert torch.all(atl.handcrafted_proj.bias == 0)
    expected = math.sqrt(2.0 / (16 * 16 * 32))
    assert abs(atl.handcrafted_proj.weight.std().item() - expected) / expected < 0.1


def test_build_atl_rejects_unknown() -> None:
    with pytest.raises(ValueError, match='unknown ATL'):
        build_atl('lora', 64, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='at least one'):
        PromptATL(64, 2, handcrafted=False, embedding=False)
    with pytest.raises(ValueError, match='location'):
        SpaceATL(64, 2, location='after_mlp')  # type: ignore[arg-type]


# ---------------------------------------------------------------------- behaviour
def test_prompt_atl_matches_reference_formula() -> None:
    torch.manual_seed(0)
    c, depth = 64, 3
    atl = PromptATL(embed_dim=c, depth=depth, dim=8)
    pos = torch.randn(1, 4, 4, c)
    atl.bind_position_embedding(lambda grid: pos)
    image = torch.randn(2, 3, 64, 64)
    patch = torch.randn(2, 4, 4, c)  # patch tokens before the position embedding
    state = atl.begin(image, patch + pos)
    hand = atl.handcrafted_proj(highpass_fft(image, 0.25)).permute(0, 2, 3, 1)
    base = hand + atl.embedding_proj(patch)
    torch.testing.assert_close(state, base, atol=1e-5, rtol=1e-5)
    tokens = torch.randn(2, 4, 4, c)
    for i in range(depth):
        expected = tokens + atl.shared_proj(atl.blocks[i](base))
        torch.testing.assert_close(atl.before_block(i, tokens, state), expected, atol=1e-5, rtol=1e-5)
        assert atl.after_attention(i, tokens, state) is tokens
    assert not atl.uses_after_attention


@pytest.mark.parametrize('kind', ['mlp2', 'conv'])
def test_other_prompt_atls_shapes(kind: str) -> None:
    atl = PromptATL(embed_dim=64, depth=2, dim=8, kind=kind)  # type: ignore[arg-type]
    state = atl.begin(torch.randn(2, 3, 32, 32), torch.randn(2, 2, 2, 64))
    assert state.shape == (2, 2, 2, 8)
    assert atl.before_block(1, torch.zeros(2, 2, 2, 64), state).shape == (2, 2, 2, 64)
    assert (atl.shared_proj is None) == (kind == 'conv')


def test_branch_switches() -> None:
    atl = PromptATL(embed_dim=64, depth=2, dim=8, handcrafted=False)
    assert atl.handcrafted_proj is None
    tokens = torch.randn(1, 2, 2, 64)
    torch.testing.assert_close(atl.begin(torch.randn(1, 3, 32, 32), tokens), atl.embedding_proj(tokens))
    atl = PromptATL(embed_dim=64, depth=2, dim=8, embedding=False)
    assert atl.embedding_proj is None
    image = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(atl.begin(image, tokens), atl.handcrafted_proj(highpass_fft(image)).permute(0, 2, 3, 1))


def test_space_adapter_skip_and_location() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 3, 64)
    with_skip = SpaceATL(64, 2, skip=True)
    without = SpaceATL(64, 2, skip=False)
    without.load_state_dict(with_skip.state_dict())
    assert with_skip.uses_after_attention
    y_skip = with_skip.after_attention(1, x, None)
    y = without.after_attention(1, x, None)
    torch.testing.assert_close(y_skip, x + y)
    assert with_skip.before_block(1, x, None) is x
    # The shared conv + LN + GELU is applied three times.
    m = with_skip.adapters[1]
    z = m['fc2'](torch.nn.functional.gelu(m['fc1'](x))).permute(0, 3, 1, 2)
    for _ in range(3):
        z = torch.nn.functional.gelu(m['norm'](m['conv'](z)))
    torch.testing.assert_close(y, z.permute(0, 2, 3, 1))

    pre = SpaceATL(64, 2, skip=True, location='pre_block')
    pre.load_state_dict(with_skip.state_dict())
    assert not pre.uses_after_attention
    torch.testing.assert_close(pre.before_block(1, x, None), y_skip)
    assert pre.after_attention(1, x, None) is x


# ---------------------------------------------------------------------- inside the encoder
def _encoder(injector: torch.nn.Module | None) -> SAMEncoder:
    torch.manual_seed(0)
    return SAMEncoder('vit_tiny', input_size=64, out_indices=(7,), injector=injector)


def test_zero_prompt_atl_leaves_the_encoder_unchanged() -> None:
    atl = PromptATL(embed_dim=64, depth=8, dim=8)
    torch.nn.init.zeros_(atl.shared_proj.weight)
    torch.nn.init.zeros_(atl.shared_proj.bias)
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ref = _encoder(None)(image).features[0]
        out = _encoder(atl)(image).features[0]
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize('location', ['after_attention', 'pre_block'])
def test_space_adapter_inside_the_encoder(location: str) -> None:
    atl = SpaceATL(64, 8, location=location)  # type: ignore[arg-type]
    enc = _encoder(atl)
    image = torch.rand(2, 3, 64, 64)
    feats = enc(image).features[0]
    assert feats.shape == (2, 64, 4, 4)
    with torch.no_grad():
        ref = _encoder(None)(image).features[0]
    assert not torch.allclose(feats, ref)
    feats.sum().backward()
    assert all(p.grad is not None for p in atl.adapters[0].parameters())
    assert all(p.grad is None for p in enc.vit.parameters())


# ---------------------------------------------------------------------- the released code's quirks (reference protocol)
def test_reference_token_reshape_regroups_the_flat_token_buffer() -> None:
    """The released code's ``x.reshape(N, C, H*W).permute(0, 2, 1)`` on N x H x W x C tokens (image_encoder.py:289-292):
    its token j, channel c is element c * H * W + j of the flattened H x W x C tokens."""
    from sam_cffnet.models.adapters.atl import reference_token_reshape

    b, h, w, c = 2, 3, 4, 6
    tokens = torch.randn(b, h, w, c)
    out = reference_token_reshape(tokens)
    flat = tokens.reshape(b, -1)
    for j in range(h * w):
        for k in range(c):
            assert out[1, j // w, j % w, k] == flat[1, k * h * w + j]
    assert not torch.equal(out, tokens)
    # ViT-L's 64 x 64 x 1024 grid: "token" j gathers channel j % 1024 of the tokens 4 c + j // 1024
    big = torch.arange(64 * 64 * 1024, dtype=torch.float64).reshape(1, 64, 64, 1024)
    scrambled = reference_token_reshape(big)
    j = 2 * 1024 + 17
    expected = torch.tensor([(4 * k + j // 1024) * 1024 + j % 1024 for k in range(1024)], dtype=torch.float64)
    assert torch.equal(scrambled[0, j // 64, j % 64], expected)


def test_embedding_reshape_option() -> None:
    torch.manual_seed(0)
    per_token = PromptATL(embed_dim=16, depth=2, dim=4, handcrafted=False)
    reference = PromptATL(embed_dim=16, depth=2, dim=4, handcrafted=False, embedding_reshape='reference')
    reference.load_state_dict(per_token.state_dict())
    tokens = torch.randn(2, 3, 5, 16)
    image = torch.zeros(2, 3, 48, 80)
    from sam_cffnet.models.adapters.atl import reference_token_reshape

    torch.testing.assert_close(reference.begin(image, tokens), per_token.begin(image, reference_token_reshape(tokens)))
    assert not torch.allclose(reference.begin(image, tokens), per_token.begin(image, tokens))
    with pytest.raises(ValueError, match='embedding_reshape'):
        PromptATL(16, 2, embedding_reshape='channels_first')  # type: ignore[arg-type]


def test_space_adapter_reference_initialisation_and_freezing() -> None:
    """The reference's ``Adapter`` (image_encoder2.py:647-657) keeps PyTorch's default init; its freezing rule
    (train.py:116-118) freezes it."""
    from segment_anything.modeling.common import LayerNorm2d

    torch.manual_seed(7)
    atl = SpaceATL(32, 2, init='default', trainable=False)
    torch.manual_seed(7)
    for block in atl.adapters:
        expected = [torch.nn.Linear(32, 8), torch.nn.Linear(8, 32), torch.nn.Conv2d(32, 32, 1), LayerNorm2d(32)]
        for name, module in zip(('fc1', 'fc2', 'conv', 'norm'), expected, strict=True):
            for got, want in zip(block[name].parameters(), module.parameters(), strict=True):
                assert torch.equal(got, want), name
    assert not any(p.requires_grad for p in atl.parameters())
    ours = SpaceATL(32, 2)
    assert all(p.requires_grad for p in ours.parameters())
    assert torch.all(ours.adapters[0]['fc1'].bias == 0)  # trunc-normal scheme: zero biases
    with pytest.raises(ValueError, match='init'):
        SpaceATL(32, 2, init='xavier')  # type: ignore[arg-type]
