"""The comparison baselines: shapes, odd tile sizes, band counts, gradients, local encoder weights, registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sam_cffnet.checkpoint import CheckpointError
from sam_cffnet.models import build_model, count_parameters
from sam_cffnet.models.baselines import AttentionUNet, HRNet, HRNetHead

#: registered name -> tiny arguments (the shipped configs use the paper-size defaults).
TINY = {
    'attention_unet': {'base_channels': 4},
    'deeplabv3plus': {'backbone': 'resnet18'},
    'hrnet': {'backbone': 'hrnet_w18_small'},
    'segformer': {'backbone': 'mit_b0', 'decoder_channels': 32},
}


@pytest.mark.parametrize('name', list(TINY))
def test_forward_backward_any_tile(name: str) -> None:
    model = build_model(name, in_channels=4, **TINY[name]).train()
    x = torch.rand(2, 4, 48, 40)  # not a multiple of 32: padded inside, cropped back
    out = model(x)
    assert out.shape == (2, 1, 48, 40)
    out.mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(p.requires_grad for p in model.parameters())
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > 0.9 * len(grads)
    model.zero_grad()


def test_paper_sizes() -> None:
    # Attention U-Net with the paper's width 64: the well-known 34.88 M parameters
    assert count_parameters(AttentionUNet())['total'] == 34_878_573


def test_hrnet_head_concatenates_branches() -> None:
    model = HRNet(backbone='hrnet_w18_small')
    widths = model.encoder.feature_info.channels()
    assert widths == [16, 32, 64, 128]
    assert model.decoder.last_layer[0].in_channels == sum(widths)
    head = HRNetHead([2, 4], 1)
    out = head([torch.rand(1, 2, 8, 8), torch.rand(1, 4, 4, 4)])
    assert out.shape == (1, 1, 8, 8)


@pytest.mark.parametrize('name', ['deeplabv3plus', 'hrnet', 'segformer'])
def test_local_imagenet_weights_and_band_adaptation(name: str, tmp_path: Path) -> None:
    source = build_model(name, **TINY[name])
    path = tmp_path / 'imagenet.pth'
    # a timm/torchvision-style file: bare encoder keys plus a classifier the encoder does not have
    state = {k: v for k, v in source.net.encoder.state_dict().items()} if hasattr(source, 'net') else None
    if state is None:
        state = dict(source.encoder.state_dict())
    state['fc.weight'] = torch.zeros(10, 4)
    torch.save(state, path)

    loaded = build_model(name, backbone_weights=str(path), **TINY[name])
    enc = loaded.net.encoder if hasattr(loaded, 'net') else loaded.encoder
    for k, v in enc.state_dict().items():
        assert torch.equal(v, state[k]), k

    # 5 bands: the first conv's ImageNet kernels are cycled over the bands and rescaled by 3/5
    five = build_model(name, backbone_weights=str(path), in_channels=5, **TINY[name])
    enc5 = five.net.encoder if hasattr(five, 'net') else five.encoder
    first = next(m for m in enc5.modules() if isinstance(m, torch.nn.Conv2d))
    w3 = next(v for k, v in state.items() if v.ndim == 4)
    assert first.weight.shape[1] == 5
    torch.testing.assert_close(first.weight[:, 3], w3[:, 0] * 3 / 5)
    assert five(torch.rand(1, 5, 64, 64)).shape == (1, 1, 64, 64)  # batch of one in train mode


def test_bad_weight_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        build_model('deeplabv3plus', backbone='resnet18', backbone_weights=str(tmp_path / 'missing.pth'))
    torch.save({'something.else': torch.zeros(3)}, tmp_path / 'other.pth')
    with pytest.raises(ValueError, match='tensors were found'):
        build_model('deeplabv3plus', backbone='resnet18', backbone_weights=str(tmp_path / 'other.pth'))
    (tmp_path / 'text.pth').write_text('not a checkpoint')
    with pytest.raises(CheckpointError):
        build_model('hrnet', backbone='hrnet_w18_small', backbone_weights=str(tmp_path / 'text.pth'))


def test_attention_unet_backbone_weights(tmp_path: Path) -> None:
    a = AttentionUNet(base_channels=4)
    torch.save({'state_dict': {f'model.encoder.{k}': v for k, v in a.encoder.state_dict().items()}}, tmp_path / 'a')
    b = AttentionUNet(base_channels=4, backbone_weights=str(tmp_path / 'a'))
    for (k, v), w in zip(a.encoder.state_dict().items(), b.encoder.state_dict().values()):
        assert torch.equal(v, w), k


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match='Mix Transformer'):
        build_model('segformer', backbone='resnet18')
    with pytest.raises(ValueError, match='HRNet'):
        build_model('hrnet', backbone='resnet18')
    with pytest.raises(ValueError, match='does not take'):
        build_model('attention_unet', backbone='resnet18')
