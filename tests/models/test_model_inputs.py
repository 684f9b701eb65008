"""One way to feed a model: training, validation, prediction and mapping take its inputs from a batch alike."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

from sam_cffnet.errors import ConfigError
from sam_cffnet.inference.model import MappingModule
from sam_cffnet.models import build_model
from sam_cffnet.preprocessing import Preprocessing
from sam_cffnet.tasks.segmentation import SegmentationTask

HPCL: dict[str, Any] = {
    'variant': 'vit_tiny', 'input_size': None, 'decoder_channels': 64, 'dem_channels': [8, 8, 8, 8],
    'dem_out_channels': 8, 'embed_dim': 8, 'head_hidden': 16, 'queue_size': 8, 'samples_per_class': 2,
    'hyperpixel_size': 1,
}  # fmt: skip


def _task(name: str, **args: Any) -> SegmentationTask:
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*RANDOM weights')
        return SegmentationTask(build_model(name, **args), num_figure_tiles=0)


def _batch(with_dem: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    batch = {'image': torch.rand(2, 3, 32, 32, generator=g), 'mask': torch.zeros(2, 32, 32, dtype=torch.long)}
    if with_dem:
        batch['dem'] = torch.randn(2, 1, 32, 32, generator=g)
    return batch


@pytest.mark.parametrize('hpcl', [False, True])
def test_a_missing_input_is_the_same_user_error_in_training_and_validation(hpcl: bool) -> None:
    """A DEM-fusing model on a datamodule without ``dem``: training refuses it as validation does (one line naming
    the setting to change), with or without the contrastive loss."""
    task = _task('hpcl_net', **HPCL, hpcl=hpcl)
    batch = _batch(with_dem=False)
    expected = r"needs batch keys \['image', 'dem'\].*dem_mode: separate"
    with pytest.raises(ConfigError, match=expected) as val:
        task.validation_step(batch, 0)
    with pytest.raises(ConfigError, match=expected) as train:
        task.train().training_step(batch, 0)
    assert str(train.value) == str(val.value)


def test_training_validation_and_mapping_feed_the_model_the_same_inputs() -> None:
    """Same weights, same batch: the logits of a training step (contrastive loss off), of a validation step and of
    the mapping module agree."""
    task = _task('hpcl_net', **HPCL, hpcl=False).eval()
    batch = _batch(with_dem=True)
    with torch.no_grad():
        train_logits, aux = task.model.training_outputs(batch)
        val_logits = task(*task.model_inputs(batch))
        pre = Preprocessing(
            bands=('red', 'green', 'blue'), scale=(1.0,) * 3, mean=(0.0,) * 3, std=(1.0,) * 3, dem_mode='separate',
            dem_bands=('dem',), dem_normalization='none', tile_size=32,
        )  # fmt: skip
        mapping = MappingModule(task, pre)
        prob = mapping.probabilities(batch['image'], batch['dem'], torch.ones(2, 32, 32, dtype=torch.bool))
    assert aux == {}
    assert torch.equal(train_logits, val_logits)
    assert torch.allclose(prob, torch.sigmoid(val_logits[:, 0]), atol=1e-6)
