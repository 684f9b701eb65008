"""SAM-CFFNet model: parameter counts, shapes, freezing, options and errors."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling import ImageEncoderViT
from torch import nn

from sam_cffnet import SAMCFFNet
from sam_cffnet.errors import CheckpointError, ConfigError
from sam_cffnet.models import SAMEncoder, build_model, count_parameters
from sam_cffnet.models.decoders.cffd import ASPP, PSAModule


def tiny(**kwargs: object) -> SAMCFFNet:
    return SAMCFFNet(**{'variant': 'vit_tiny', 'input_size': None, **kwargs})


class TestParameterCounts:
    def test_vit_l_shared_matches_reference(self) -> None:
        with torch.device('meta'):
            model = SAMCFFNet(variant='vit_l')
        counts = count_parameters(model)
        assert counts['trainable'] == 4_258_723
        # 308,278,272 frozen encoder parameters in the reference minus SAM's unused neck (852,992), never built.
        assert counts['frozen'] == 308_278_272 - 852_992

    def test_vit_l_unshared(self) -> None:
        with torch.device('meta'):
            model = SAMCFFNet(variant='vit_l', shared=False)
        assert count_parameters(model)['trainable'] == 15_068_167

    @pytest.mark.parametrize(('variant', 'embed', 'blocks'), [('vit_b', 768, 12), ('vit_h', 1280, 32)])
    def test_other_sizes(self, variant: str, embed: int, blocks: int) -> None:
        with torch.device('meta'):
            model = SAMCFFNet(variant=variant)
        assert model.encoder.embed_dim == embed
        assert len(model.encoder.vit.blocks) == blocks
        assert not hasattr(model.encoder.vit, 'neck')


class TestForward:
    def test_reference_geometry(self) -> None:
        # encoder input 4x the tile, logits at the tile size (reference: 256 -> 1024 -> 256).
        model = SAMCFFNet(variant='vit_tiny', input_size=128).eval()
        out = model(torch.rand(2, 3, 32, 32))
        assert out.shape == (2, 1, 32, 32)

    def test_native_size(self) -> None:
        model = tiny().eval()
        assert model(torch.rand(2, 3, 64, 48)).shape == (2, 1, 64, 48)

    def test_feature_levels(self) -> None:
        enc = SAMEncoder('vit_tiny', input_size=None)
        out = enc(torch.rand(1, 3, 64, 64))
        assert len(out.features) == 4
        assert all(f.shape == (1, 64, 4, 4) for f in out.features)
        assert out.image.shape == (1, 3, 64, 64)

    def test_features_equal_plain_segment_anything(self) -> None:
        """Our tapped path gives exactly the reference's forward_blk outputs (full SAM ViT, same weights)."""
        enc = SAMEncoder('vit_tiny', input_size=256)
        for p in enc.parameters():
            nn.init.normal_(p, std=0.05)
        spec = enc.spec
        plain = ImageEncoderViT(
            img_size=256, embed_dim=spec.embed_dim, depth=spec.depth, num_heads=spec.num_heads,
            norm_layer=lambda d: nn.LayerNorm(d, eps=1e-6), use_rel_pos=True, window_size=spec.window_size,
            global_attn_indexes=spec.global_attn_indexes,
        )  # fmt: skip
        missing = plain.load_state_dict(enc.vit.state_dict(), strict=False).missing_keys
        assert all(k.startswith('neck.') for k in missing)
        x = torch.rand(1, 3, 256, 256)
        ours = enc(x).features
        tokens = plain.patch_embed(x) + plain.pos_embed
        ref = []
        for i, blk in enumerate(plain.blocks):
            tokens = blk(tokens)
            if i in spec.global_attn_indexes:
                ref.append(tokens.permute(0, 3, 1, 2))
        for a, b in zip(ours, ref, strict=True):
            assert torch.equal(a, b)

    def test_batch_of_one_trains(self) -> None:
        model = tiny().train()
        out = model(torch.rand(1, 3, 64, 64))
        out.mean().backward()

    def test_batch_of_one_aspp_uses_running_stats(self) -> None:
        aspp = ASPP(64, 64).train()
        aspp(torch.rand(1, 64, 8, 8))
        assert aspp.branch5_bn.num_batches_tracked.item() == 0
        aspp(torch.rand(2, 64, 8, 8))
        assert aspp.branch5_bn.num_batches_tracked.item() == 1

    def test_psa_concat_order_is_reversed(self) -> None:
        psa = PSAModule(64, 64).eval()
        x = torch.rand(1, 64, 8, 8)
        out = psa(x)
        # The last quarter of the output channels comes from the first (3x3) branch.
        w = torch.softmax(torch.stack([psa.se(b(x)) for b in (psa.conv_1, psa.conv_2, psa.conv_3, psa.conv_4)], 1), 1)
        first = psa.conv_1(x) * w[:, 0]
        assert torch.allclose(out[:, 48:], first, atol=1e-6)

    def test_sam_normalization_option(self) -> None:
        enc = SAMEncoder('vit_tiny', input_size=None, sam_normalize=True)
        x = torch.full((1, 3, 32, 32), 0.5)
        image, enc_in = enc.prepare(x)
        assert torch.equal(image, x)
        assert torch.allclose(enc_in[0, 0, 0, 0], torch.tensor((127.5 - 123.675) / 58.395), atol=1e-6)


class TestFrozen:
    def test_training_step_leaves_encoder_bit_identical(self) -> None:
        model = tiny().train()
        before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        for _ in range(2):
            loss = model(torch.rand(2, 3, 64, 64)).sigmoid().mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
        assert all(p.grad is None for p in model.encoder.parameters())
        assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
        assert not model.encoder.vit.training
        assert any(not torch.equal(a, b) for a, b in zip(model.decoder.parameters(), tiny().decoder.parameters()))

    def test_band_projection_is_the_only_trainable_encoder_part(self) -> None:
        model = tiny(in_channels=14, band_adapter='project', band_indices=[3, 2, 1])
        names = [n for n, p in model.encoder.named_parameters() if p.requires_grad]
        assert names == ['band_adapter.proj.weight', 'band_adapter.proj.bias']
        x = torch.rand(2, 14, 32, 32)
        model(x).mean().backward()
        assert model.encoder.band_adapter.proj.weight.grad is not None
        assert all(p.grad is None for p in model.encoder.vit.parameters())


class TestBands:
    def test_select_bands(self) -> None:
        model = tiny(in_channels=14, band_indices=[3, 2, 1]).eval()
        x = torch.rand(1, 14, 32, 32)
        image, _ = model.encoder.prepare(x)
        assert torch.equal(image, x[:, [3, 2, 1]])

    def test_projection_starts_as_selection(self) -> None:
        enc = SAMEncoder('vit_tiny', input_size=None, in_channels=14, band_adapter='project', band_indices=[3, 2, 1])
        x = torch.rand(1, 14, 32, 32)
        assert torch.allclose(enc.prepare(x)[0], x[:, [3, 2, 1]])


class TestErrors:
    def test_wrong_band_count(self) -> None:
        with pytest.raises(ValueError, match='3-band images, got 4 bands'):
            tiny()(torch.rand(1, 4, 64, 64))

    def test_size_not_multiple_of_patch(self) -> None:
        with pytest.raises(ValueError, match='multiple of 16'):
            tiny()(torch.rand(1, 3, 60, 64))

    def test_bad_input_size_option(self) -> None:
        with pytest.raises(ValueError, match='multiple of 16'):
            SAMCFFNet(variant='vit_tiny', input_size=1000)

    def test_missing_checkpoint(self, tmp_path) -> None:
        with pytest.raises(FileNotFoundError, match=r'nope\.pth does not exist \(expected official SAM weights'):
            tiny(sam_checkpoint=tmp_path / 'nope.pth')

    def test_not_a_checkpoint(self, tmp_path) -> None:
        bad = tmp_path / 'notes.pth'
        bad.write_text('this is not a checkpoint')
        with pytest.raises(CheckpointError, match=r'notes\.pth is a text file, not a PyTorch checkpoint'):
            tiny(sam_checkpoint=bad)

    def test_truncated_checkpoint(self, tmp_path) -> None:
        path = tmp_path / 'sam.pth'
        enc = SAMEncoder('vit_tiny')
        torch.save({f'image_encoder.{k}': v for k, v in enc.vit.state_dict().items()}, path)
        path.write_bytes(path.read_bytes()[:5000])
        with pytest.raises(CheckpointError, match=r'sam\.pth'):
            tiny(sam_checkpoint=path)

    def test_other_sam_size_names_both(self, tmp_path) -> None:
        path = tmp_path / 'sam_vit_tiny.pth'
        torch.save({f'image_encoder.{k}': v for k, v in SAMEncoder('vit_tiny').vit.state_dict().items()}, path)
        with pytest.raises(ValueError, match=r'holds a SAM vit_tiny .* configured for vit_b'):
            SAMEncoder('vit_b', sam_checkpoint=path)

    def test_pickle_code_is_refused(self, tmp_path) -> None:
        class Evil:
            def __reduce__(self):
                return (print, ('pwned',))

        path = tmp_path / 'evil.pth'
        torch.save({'x': Evil()}, path)
        code = r'evil\.pth is refused: it holds Python code to run when loaded \(print\)'
        with pytest.raises(CheckpointError, match=code) as err:
            tiny(sam_checkpoint=path)
        assert 'weights_only=False' not in str(err.value) and err.value.__cause__ is None  # no unsafe advice
        random_bytes = tmp_path / 'noise.pth'
        random_bytes.write_bytes(bytes(range(256)) * 40)
        with pytest.raises(CheckpointError, match=r'noise\.pth is not a PyTorch checkpoint') as err:
            tiny(sam_checkpoint=random_bytes)
        assert 'weights_only' not in str(err.value)

    def test_unknown_model_argument(self) -> None:
        with pytest.raises(ConfigError, match="does not take \\['nope'\\]"):
            build_model('sam_cffnet', nope=1)
        with pytest.raises(ConfigError, match="does not take \\['out_indices'\\]"):  # internal, not an option
            build_model('sam_cffnet', out_indices=[1])


def test_official_checkpoint_loads(tmp_path) -> None:
    """An official-format SAM checkpoint (image_encoder.*, prompt_encoder.*, mask_decoder.*, neck) loads."""
    src = SAMEncoder('vit_tiny')
    for p in src.parameters():
        nn.init.normal_(p)
    state = {f'image_encoder.{k}': v for k, v in src.vit.state_dict().items()}
    state['image_encoder.neck.0.weight'] = torch.zeros(256, 64, 1, 1)
    state['mask_decoder.iou_token.weight'] = torch.zeros(1, 256)
    path = tmp_path / 'sam_vit_tiny.pth'
    torch.save(state, path)
    model = tiny(sam_checkpoint=path)
    assert all(torch.equal(v, src.vit.state_dict()[k]) for k, v in model.encoder.vit.state_dict().items())
    assert model.encoder.fingerprint() == src.fingerprint()
    assert model.external_state_keys()
