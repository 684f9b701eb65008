"""Tests for TransLandSeg (frozen SAM + ATL + prompt-free SAM mask decoder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import model_flags
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

from sam_cffnet.cli import main
from sam_cffnet.models import build_model
from sam_cffnet.models.adapters.atl import PromptATL, SpaceATL, highpass_fft
from sam_cffnet.models.decoders.sam_mask_decoder import build_sam_neck
from sam_cffnet.models.encoders.sam import SAMEncoder
from sam_cffnet.models.translandseg import TransLandSeg

#: (atl, extra args) of every ATL variant.
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ('mlp', {}),
    ('mlp2', {}),
    ('conv', {}),
    ('space', {}),
    ('space', {'space_skip': False}),
    ('space', {'space_location': 'pre_block'}),
    ('mlp', {'handcrafted': False}),
]
VARIANT_IDS = ['mlp', 'mlp2', 'conv', 'space', 'space-noskip', 'space-preblock', 'mlp-embedding-only']

#: ViT-L trainable parameters per variant (ATL + 4,058,596 mask decoder incl. no-mask embedding).
VIT_L_TRAINABLE = {
    'mlp': 116_544 + 4_058_596,
    'mlp2': 141_888 + 4_058_596,
    'conv': 953_664 + 4_058_596,
    'space': 37_853_184 + 4_058_596,
}
#: ViT-L frozen parameters: image encoder (ViT + neck), as in the SAM checkpoint.
VIT_L_FROZEN = 308_278_272


def tiny(**kwargs: Any) -> TransLandSeg:
    args: dict[str, Any] = {'variant': 'vit_tiny', 'input_size': 64, **kwargs}
    return TransLandSeg(**args)


def official_tiny_sam(path: Path, seed: int = 1) -> dict[str, torch.Tensor]:
    """Write a random SAM checkpoint in the official layout with a vit_tiny image encoder; return its state."""
    torch.manual_seed(seed)
    vit = SAMEncoder('vit_tiny', input_size=None).vit
    state = {f'image_encoder.{k}': v for k, v in vit.state_dict().items()}
    state.update({f'image_encoder.neck.{k}': v for k, v in build_sam_neck(64).state_dict().items()})
    prompt = PromptEncoder(embed_dim=256, image_embedding_size=(16, 16), input_image_size=(256, 256), mask_in_chans=16)
    state.update({f'prompt_encoder.{k}': v for k, v in prompt.state_dict().items()})
    decoder = MaskDecoder(transformer_dim=256, transformer=TwoWayTransformer(2, 256, 8, 2048))
    state.update({f'mask_decoder.{k}': v for k, v in decoder.state_dict().items()})
    torch.save(state, path)
    return state


# ---------------------------------------------------------------------- construction and sizes
def test_registered() -> None:
    model = build_model('translandseg', variant='vit_tiny', input_size=64)
    assert isinstance(model, TransLandSeg)
    assert isinstance(model.atl, PromptATL) and model.atl.kind == 'mlp'
    assert model.encoder.sam_normalize  # ImageNet mean/std, as the reference
    assert model.encoder.out_indices == (7,)


@pytest.mark.parametrize('atl', list(VIT_L_TRAINABLE))
def test_vit_l_parameter_counts(atl: str) -> None:
    with torch.device('meta'):
        model = TransLandSeg(variant='vit_l', atl=atl)  # type: ignore[arg-type]
    report = model.parameter_report()
    print(f'\nTransLandSeg ViT-L atl={atl}: {report}')
    assert report['trainable'] == VIT_L_TRAINABLE[atl]
    assert report['frozen'] == VIT_L_FROZEN
    assert report['trainable'] == report['atl'] + report['decoder']
    assert report['total'] == VIT_L_FROZEN + VIT_L_TRAINABLE[atl]
    if atl == 'mlp':  # the paper: 1.3 % of SAM's parameters are trained
        assert report['atl'] == 116_544
        assert report['decoder'] == 4_058_596
        assert report['total'] == 312_453_412
        assert report['trainable_ratio'] == pytest.approx(0.013362, abs=1e-6)


# ---------------------------------------------------------------------- training
@pytest.mark.parametrize(('atl', 'extra'), VARIANTS, ids=VARIANT_IDS)
def test_variant_trains_and_frozen_weights_stay_identical(atl: str, extra: dict[str, Any]) -> None:
    model = tiny(atl=atl, **extra)
    frozen_names = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen_names == {f'encoder.vit.{n}' for n, _ in model.encoder.vit.named_parameters()} | {
        f'neck.{n}' for n, _ in model.neck.named_parameters()
    }
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.01)
    model.train()
    assert not model.encoder.vit.training and not model.neck.training and model.atl.training
    image = torch.rand(2, 3, 64, 64)
    logits = model(image)
    assert logits.shape == (2, 1, 64, 64)
    target = (torch.rand(2, 1, 64, 64) > 0.5).float()
    torch.nn.functional.binary_cross_entropy_with_logits(logits, target).backward()
    for name, p in model.named_parameters():
        if name in frozen_names:
            assert p.grad is None, name
    assert all(p.grad is not None for p in model.atl.parameters())
    assert model.decoder.no_mask_embed.weight.grad is not None
    optimizer.step()
    after = model.state_dict()
    for key, value in before.items():
        frozen = (
            key.startswith(('encoder.vit.', 'neck.')) or key == 'decoder.pe_layer.positional_encoding_gaussian_matrix'
        )
        if frozen:
            assert torch.equal(after[key], value), f'frozen tensor {key} changed'
    assert not torch.equal(after['decoder.no_mask_embed.weight'], before['decoder.no_mask_embed.weight'])
    atl_keys = [k for k in after if k.startswith('encoder.injector.') and k.endswith('weight')]
    assert atl_keys and all(not torch.equal(after[k], before[k]) for k in atl_keys)


def test_batch_items_are_independent() -> None:
    model = tiny().eval()
    image = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        out = model(image)
        single = model(image[1:2])
    torch.testing.assert_close(out[1:2], single, atol=1e-5, rtol=1e-5)


def test_native_size_multispectral_and_bf16() -> None:
    model = tiny(input_size=None, in_channels=14, band_indices=[3, 2, 1]).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 14, 48, 48))
        assert out.shape == (1, 1, 48, 48)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            bf = model(torch.rand(1, 14, 48, 48))
    assert torch.isfinite(bf.float()).all()


@pytest.mark.parametrize('atl', ['mlp', 'space'])
def test_speed_switches_apply_through_the_adapters(atl: str) -> None:
    """SDPA attention gives the reference result; bf16 autocast runs and trains the ATL (FFT in float32)."""
    reference = tiny(atl=atl).eval()
    fast = tiny(atl=atl, attention='sdpa').eval()
    fast.load_state_dict(reference.state_dict())
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fast(image), reference(image), atol=1e-4, rtol=1e-4)
    bf16 = tiny(atl=atl, attention='sdpa', autocast='bf16')
    out = bf16(image)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    out.mean().backward()
    assert all(p.grad is not None for p in bf16.atl.parameters())
    assert all(p.grad is None for p in bf16.encoder.vit.parameters())


def test_embedding_branch_sees_tokens_before_position_embedding() -> None:
    model = tiny()
    atl = model.atl
    assert isinstance(atl, PromptATL) and atl._position_embedding is not None
    image = torch.rand(1, 3, 64, 64)
    _, enc = model.encoder.prepare(image)
    patch = model.encoder.vit.patch_embed(enc)
    tokens = patch + model.encoder.position_embedding(tuple(patch.shape[1:3]))
    with torch.no_grad():
        base = atl.begin(enc, tokens)
        hand = atl.handcrafted_proj(highpass_fft(enc)).permute(0, 2, 3, 1)
        torch.testing.assert_close(base, atl.embedding_proj(patch) + hand, atol=1e-5, rtol=1e-5)


def test_space_variant_options() -> None:
    model = tiny(atl='space', space_skip=False, space_location='pre_block', space_ratio=0.5, space_conv_steps=1)
    atl = model.atl
    assert isinstance(atl, SpaceATL)
    assert (atl.skip, atl.location, atl.conv_steps) == (False, 'pre_block', 1)
    assert atl.adapters[0]['fc1'].out_features == 32


def test_reference_protocol_options() -> None:
    model = tiny(embedding_reshape='reference')
    assert model.atl.embedding_reshape == 'reference'
    assert model.config()['init_args']['embedding_reshape'] == 'reference'
    frozen = tiny(atl='space', space_init='default', space_trainable=False)
    report = frozen.parameter_report()
    assert report['trainable'] == report['decoder'] and not any(p.requires_grad for p in frozen.atl.parameters())
    assert frozen.atl.init == 'default'
    trained = tiny(atl='space')
    assert (
        trained.parameter_report()['trainable']
        == trained.parameter_report()['decoder'] + trained.parameter_report()['atl']
    )


# ---------------------------------------------------------------------- SAM checkpoint
def test_loads_encoder_neck_decoder_and_prompt_embeddings(tmp_path: Path) -> None:
    path = tmp_path / 'sam_vit_tiny.pth'
    state = official_tiny_sam(path)
    model = tiny(sam_checkpoint=path)
    for k, v in model.encoder.vit.state_dict().items():
        assert torch.equal(v, state[f'image_encoder.{k}']), k
    for k, v in model.neck.state_dict().items():
        assert torch.equal(v, state[f'image_encoder.neck.{k}']), k
    for k, v in model.decoder.mask_decoder.state_dict().items():
        assert torch.equal(v, state[f'mask_decoder.{k}']), k
    assert torch.equal(
        model.decoder.pe_layer.positional_encoding_gaussian_matrix,
        state['prompt_encoder.pe_layer.positional_encoding_gaussian_matrix'],
    )
    assert torch.equal(model.decoder.no_mask_embed.weight, state['prompt_encoder.no_mask_embed.weight'])
    external = set(model.external_state_keys())
    own = set(model.state_dict())
    assert external <= own
    assert {k for k in own if k.startswith(('encoder.vit.', 'neck.'))} <= external
    assert 'decoder.pe_layer.positional_encoding_gaussian_matrix' in external
    assert not any(k.startswith(('encoder.injector.', 'decoder.mask_decoder.')) for k in external)
    assert 'decoder.no_mask_embed.weight' not in external
    # Random weights (no checkpoint) must be saved: nothing is external.
    assert tiny().external_state_keys() == []


def test_reference_random_prompt_pe_and_no_decoder_loading(tmp_path: Path) -> None:
    path = tmp_path / 'sam_vit_tiny.pth'
    state = official_tiny_sam(path)
    ref = tiny(sam_checkpoint=path, reference_random_prompt_pe=True)
    assert torch.equal(ref.decoder.mask_decoder.iou_token.weight, state['mask_decoder.iou_token.weight'])
    assert not torch.equal(
        ref.decoder.pe_layer.positional_encoding_gaussian_matrix,
        state['prompt_encoder.pe_layer.positional_encoding_gaussian_matrix'],
    )
    assert 'decoder.pe_layer.positional_encoding_gaussian_matrix' not in ref.external_state_keys()
    fresh = tiny(sam_checkpoint=path, load_sam_decoder=False)
    assert not torch.equal(fresh.decoder.mask_decoder.iou_token.weight, state['mask_decoder.iou_token.weight'])
    assert torch.equal(fresh.neck[0].weight, state['image_encoder.neck.0.weight'])


def test_checkpoint_errors(tmp_path: Path) -> None:
    path = tmp_path / 'encoder_only.pth'
    vit = SAMEncoder('vit_tiny', input_size=None).vit
    torch.save({f'image_encoder.{k}': v for k, v in vit.state_dict().items()}, path)
    with pytest.raises(ValueError, match='no SAM neck'):
        tiny(sam_checkpoint=path)
    with pytest.raises(ValueError, match='unknown SAM encoder'):
        TransLandSeg(variant='vit_s')
    with pytest.raises(ValueError, match='unknown ATL'):
        tiny(atl='lora')


def test_slim_task_checkpoint_roundtrip(tmp_path: Path) -> None:
    """The training checkpoint drops the frozen SAM weights and gets them back from the SAM file."""
    from sam_cffnet.tasks.segmentation import SegmentationTask

    sam = tmp_path / 'sam_vit_tiny.pth'
    official_tiny_sam(sam)
    args = {'variant': 'vit_tiny', 'input_size': 64, 'sam_checkpoint': str(sam)}
    task = SegmentationTask(build_model('translandseg', **args))
    with torch.no_grad():
        for p in task.model.atl.parameters():
            p.add_(0.01)
    ckpt = {'state_dict': task.state_dict(), 'hyper_parameters': dict(task.hparams)}
    task.on_save_checkpoint(ckpt)
    assert not any(k.startswith(('model.encoder.vit.', 'model.neck.')) for k in ckpt['state_dict'])
    assert any(k.startswith('model.encoder.injector.') for k in ckpt['state_dict'])
    path = tmp_path / 'run.ckpt'
    torch.save(ckpt, path)
    restored = SegmentationTask.from_checkpoint(path)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(restored(image), task.eval()(image))


# ---------------------------------------------------------------------- the real CLI
def cli_args(config: str, root: Path, tmp_path: Path, model_args: dict[str, Any], *extra: str) -> list[str]:
    return [
        'fit',
        '--config', config,
        '--data.init_args.root', str(root),
        '--data.init_args.tile_size', '64',
        '--data.init_args.batch_size', '2',
        '--data.init_args.num_workers', '0',
        *model_flags(model_args),
        '--trainer.accelerator', 'cpu',
        '--trainer.devices', '1',
        '--trainer.logger', 'false',
        '--trainer.enable_progress_bar', 'false',
        '--trainer.default_root_dir', str(tmp_path),
        '--trainer.fast_dev_run', 'true',
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope='module')
def sam_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    path = tmp_path_factory.mktemp('sam') / 'sam_vit_tiny.pth'
    return path, official_tiny_sam(path)


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sam_cffnet.datasets.demo import make_demo_bijie

    root = tmp_path_factory.mktemp('demo')
    make_demo_bijie(root, num_landslide=4, num_non_landslide=2, size_range=(64, 80))
    return root


@pytest.mark.parametrize(('atl', 'extra'), VARIANTS[:6], ids=VARIANT_IDS[:6])
def test_every_variant_trains_through_the_cli(
    atl: str, extra: dict[str, Any], sam_file: tuple[Path, dict[str, torch.Tensor]], demo_root: Path, tmp_path: Path
) -> None:
    sam, state = sam_file
    model_args = {'variant': 'vit_tiny', 'input_size': None, 'sam_checkpoint': str(sam), 'atl': atl, **extra}
    demo = ['--data.init_args.num_landslide', '4', '--data.init_args.num_non_landslide', '2']
    cli = main(cli_args('translandseg_demo.yaml', demo_root, tmp_path, model_args, *demo))
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    model = cli.model.model
    assert isinstance(model, TransLandSeg) and model.atl_kind == atl
    for k, v in model.encoder.vit.state_dict().items():
        assert torch.equal(v, state[f'image_encoder.{k}']), k
    for k, v in model.neck.state_dict().items():
        assert torch.equal(v, state[f'image_encoder.neck.{k}']), k
    assert not torch.equal(model.decoder.no_mask_embed.weight, state['prompt_encoder.no_mask_embed.weight'])
    assert not torch.equal(model.decoder.mask_decoder.mask_tokens.weight, state['mask_decoder.mask_tokens.weight'])


@pytest.mark.parametrize('dataset', ['bijie', 'landslide4sense'])
def test_recipes_run(
    dataset: str, fake_roots: dict[str, Path], sam_file: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    config = f'translandseg_{dataset}.yaml'
    model_args = {'variant': 'vit_tiny', 'input_size': None, 'sam_checkpoint': str(sam_file[0])}
    cli = main(cli_args(config, fake_roots[dataset], tmp_path, model_args))
    assert cli.trainer.state.finished and isinstance(cli.model.model, TransLandSeg)


def test_recipe_values(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from sam_cffnet.recipes import resolve_config

    for dataset in ('bijie', 'landslide4sense'):
        with pytest.raises(SystemExit):
            main(['fit', '--config', f'translandseg_{dataset}.yaml', '--print_config'])
        cfg = yaml.safe_load(capsys.readouterr().out)
        init = cfg['model']
        model = init['model']['init_args']
        assert init['model']['class_path'] == 'sam_cffnet.models.TransLandSeg'
        assert model['variant'] == 'vit_l' and model['input_size'] == 1024
        assert model['sam_normalize'] is True and model['atl'] == 'mlp'
        assert model['attention'] == 'reference' and model['autocast'] == 'none'  # every encoder option shows
        assert (init['bce_weight'], init['dice_weight'], init['lr'], init['eta_min']) == (0.5, 0.5, 2e-4, 1e-7)
        assert init['scheduler'] == 'cosine'
        assert cfg['data']['init_args']['tile_size'] == 1024 and cfg['data']['init_args']['batch_size'] == 2
    demo = yaml.safe_load(open(resolve_config('translandseg_demo.yaml')))
    assert demo['model']['model']['init_args']['variant'] == 'vit_tiny'
