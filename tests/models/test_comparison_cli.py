"""Every comparison model (baselines and decoder ablations) through the real CLI: its shipped model-only config
composed with a dataset recipe, shrunk to tiny sizes by dotted overrides, one fast_dev_run training step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import model_flags

from sam_cffnet.cli import main
from sam_cffnet.models import SAMSegmenter, get_model_class
from sam_cffnet.recipes import resolve_config

SAM_TINY = {'variant': 'vit_tiny', 'sam_checkpoint': None, 'input_size': 128}
#: model config -> the overrides of its model options that make it tiny (the other shipped options are kept).
TINY = {
    'attention_unet': {'base_channels': 8},
    'deeplabv3plus': {'backbone': 'resnet18'},
    'hrnet': {'backbone': 'hrnet_w18_small'},
    'segformer': {'backbone': 'mit_b0'},
    'sam_mask_decoder': SAM_TINY,
    'sam_psp': SAM_TINY,
    'sam_aspp': SAM_TINY,
    'sam_lawin': {**SAM_TINY, 'head_channels': 64, 'heads': [8, 4, 2]},
}


def test_every_model_has_a_config() -> None:
    for name in [*TINY, 'sam_cffnet']:
        assert Path(resolve_config(f'models/{name}.yaml')).is_file(), name


@pytest.mark.parametrize('name', list(TINY))
def test_fit_fast_dev_run(name: str, fake_roots: dict[str, Path], tmp_path: Path) -> None:
    # the shipped model options with the tiny overrides (dotted command-line overrides, null included)
    args = [
        'fit',
        '--config', 'bijie.yaml',
        '--config', f'models/{name}.yaml',
        *model_flags(TINY[name]),
        '--data.init_args.root', str(fake_roots['bijie']),
        '--data.init_args.tile_size', '64',
        '--data.init_args.batch_size', '2',
        '--data.init_args.num_workers', '0',
        '--trainer.accelerator', 'cpu',
        '--trainer.devices', '1',
        '--trainer.logger', 'false',
        '--trainer.enable_progress_bar', 'false',
        '--trainer.enable_model_summary', 'false',
        '--trainer.default_root_dir', str(tmp_path),
        '--trainer.fast_dev_run', 'true',
    ]  # fmt: skip
    cli = main(args)
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    task = cli.model
    assert isinstance(task.model, get_model_class(name)) and task.hparams.model['class_path'].endswith(
        get_model_class(name).__qualname__
    )
    model = task.model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, model.in_channels, 64, 64))
    assert out.shape == (1, 1, 64, 64)
    if isinstance(model, SAMSegmenter):
        # the frozen SAM encoder stayed frozen and in eval mode, and the optimizer never saw it
        assert not any(p.requires_grad for p in model.encoder.vit.parameters())
        assert all(p.grad is None for p in model.encoder.vit.parameters())
        assert not model.encoder.vit.training
        optimized = {id(p) for g in cli.trainer.optimizers[0].param_groups for p in g['params']}
        assert not optimized & {id(p) for p in model.encoder.vit.parameters()}
    else:
        assert all(p.requires_grad for p in model.parameters())
