"""The authors' released checkpoint format loads into our model, every tensor where it belongs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from sam_cffnet import SAMCFFNet
from sam_cffnet.checkpoint import CheckpointError
from sam_cffnet.models.reference import ours_to_reference, reference_to_ours

KEYS = Path(__file__).resolve().parents[1] / 'data' / 'reference'


def reference_keys() -> dict[str, tuple[int, ...]]:
    """Every key and shape of the reference model's state dict (865 entries)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, prefix in (('encoder_state_dict.txt', 'image_encoder.'), ('decoder_state_dict.txt', 'decoder.')):
        for line in (KEYS / name).read_text().splitlines():
            key, shape = line.split('\t')[:2]
            shapes[prefix + key] = tuple(int(s) for s in re.findall(r'\d+', shape))
    return shapes


def random_reference_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Random tensors with the reference keys; the 4 copies of shared modules hold the same tensor."""
    state: dict[str, torch.Tensor] = {}
    shared = re.compile(r'^(decoder\.cdffm\.(?:MLP_1|MLP_2|necks|convs\d))\.(\d)\.(.*)$')
    for key, shape in shapes.items():
        m = shared.match(key)
        if m and m.group(2) != '0':
            state[key] = state[f'{m.group(1)}.0.{m.group(3)}']
        elif key.endswith('num_batches_tracked'):
            state[key] = torch.randint(0, 1000, ())
        else:
            state[key] = torch.randn(shape) * 0.02
    return state


@pytest.fixture(scope='module')
def reference_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    shapes = reference_keys()
    assert len(shapes) == 865
    state = random_reference_state(shapes)
    path = tmp_path_factory.mktemp('ref') / 'BJL_best.pth.tar'
    torch.save({'epoch': 17, 'state_dict': state, 'optimizer': {'state': {}, 'param_groups': []}}, path)
    return path, state


def test_reference_checkpoint_loads_every_tensor(reference_file: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, ref = reference_file
    model = SAMCFFNet.from_reference_checkpoint(path)
    assert not model.training
    ours = model.state_dict()
    mapped = reference_to_ours(ref)
    assert set(mapped) == set(ours)
    for key, value in mapped.items():
        assert torch.equal(ours[key], value), key
    # spot checks written out by hand, independent of the mapping table
    assert torch.equal(ours['decoder.cffm.fam.0.mlp1.lin1.weight'], ref['decoder.cdffm.MLP_1.3.lin1.weight'])
    assert torch.equal(
        ours['decoder.cffm.fusion.2.0.conv2.conv_4.weight'], ref['decoder.cdffm.convs3.0.conv2.conv_4.weight']
    )
    assert torch.equal(
        ours['decoder.merge.1.aspp.branch5_bn.running_var'], ref['decoder.marges.1.aspp.branch5_bn.running_var']
    )
    assert torch.equal(ours['decoder.sfe.gate.g_proj.0.weight'], ref['decoder.sfe.atts.W_g.0.weight'])
    assert torch.equal(ours['decoder.head.3.bias'], ref['decoder.last_layer.3.bias'])
    assert torch.equal(ours['encoder.vit.blocks.23.attn.rel_pos_h'], ref['image_encoder.blocks.23.attn.rel_pos_h'])
    # every reference tensor except SAM's unused neck is used
    used = {k for k in ref if not k.startswith('image_encoder.neck.')}
    assert len(used) == 865 - 6
    # the way back gives the reference's key set and tensors (shared modules repeated 4 times)
    back = ours_to_reference(ours, sam_neck={k[len('image_encoder.') :]: v for k, v in ref.items() if 'neck' in k})
    assert set(back) == set(ref)
    assert all(torch.equal(back[k], ref[k]) for k in ref)


def test_unshared_model_takes_each_copy(reference_file: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, ref = reference_file
    model = SAMCFFNet.from_reference_checkpoint(path, shared=False)
    ours = model.state_dict()
    assert torch.equal(ours['decoder.cffm.fam.2.neck.0.weight'], ref['decoder.cdffm.necks.2.0.weight'])


def test_differing_copies_need_unshared(reference_file: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path) -> None:
    _, ref = reference_file
    state = dict(ref)
    state['decoder.cdffm.MLP_1.2.lin1.bias'] = torch.ones(256)
    with pytest.raises(CheckpointError, match='shared=False'):
        reference_to_ours(state, shared=True)


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match='not a SAM-CFFNet reference checkpoint'):
        SAMCFFNet.from_reference_checkpoint(path)
