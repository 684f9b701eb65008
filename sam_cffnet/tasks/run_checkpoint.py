"""The checks a training run's checkpoint passes before ``fit``/``validate``/``test``/``predict`` use it.

``--ckpt_path`` is read here once, safely (``weights_only=True``, memory-mapped), before any data is set up or any
run folder is made: a missing, empty, truncated or foreign file, a file that holds code, or a checkpoint of a model
trained on another number of bands is refused in one line.
"""

from __future__ import annotations

import os
from typing import Any

from ..checkpoint import load_checkpoint_file
from ..errors import CheckpointError, ConfigError, MissingFileError
from .segmentation import CKPT_KEY, _saved_model_args, _saved_model_class

__all__ = ['check_checkpoint_bands', 'check_run_checkpoint']

EXPECTED = 'a checkpoint written by fit (runs/<name>/version_N/checkpoints/last.ckpt or best-*.ckpt)'


def check_run_checkpoint(path: str | os.PathLike[str], subcommand: str) -> dict[str, Any]:
    """Check ``--ckpt_path`` of ``subcommand`` and return what later checks need of it.

    Args:
        path: the checkpoint file.
        subcommand: ``fit`` (resuming needs the optimizer and loop states too), ``validate``, ``test``, ``predict``.

    Returns:
        ``{'model': class path or None, 'in_channels': int or None}`` of the model the checkpoint was trained with.

    Raises:
        MissingFileError: no such file.
        CheckpointError: empty, truncated, not a checkpoint, holds code, or not a Lightning training checkpoint.
    """
    if not os.path.exists(path):
        raise MissingFileError(f'--ckpt_path {path} does not exist (expected {EXPECTED})')
    ckpt = load_checkpoint_file(path, expected=EXPECTED, mmap=True)
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt:
        raise CheckpointError(
            f"--ckpt_path {path} holds no Lightning state_dict, expected {EXPECTED}; the authors' .pth.tar files go to "
            f'model.model.init_args.reference_checkpoint, SAM weights to model.model.init_args.sam_checkpoint'
        )
    if subcommand == 'fit' and not {'optimizer_states', 'loops'} <= set(ckpt):
        raise CheckpointError(
            f'--ckpt_path {path} holds model weights only (an exported or save_weights_only checkpoint): fit '
            f'--ckpt_path resumes a run and needs its last.ckpt; validate/test/predict take this file'
        )
    args = _saved_model_args(ckpt) if CKPT_KEY in ckpt or 'hyper_parameters' in ckpt else {}
    bands = args.get('in_channels')
    return {'model': _saved_model_class(ckpt), 'in_channels': int(bands) if isinstance(bands, int) else None}


def check_checkpoint_bands(saved: dict[str, Any], bands: int | None, path: Any) -> None:
    """Refuse a checkpoint whose model was trained on another number of bands than the data delivers.

    Args:
        saved: what :func:`check_run_checkpoint` returned.
        bands: the datamodule's ``num_channels`` (``None``: unknown, nothing checked).
        path: the checkpoint, for the message.

    Raises:
        ConfigError: naming both band counts.
    """
    trained = saved.get('in_channels')
    if isinstance(bands, int) and isinstance(trained, int) and bands != trained:
        raise ConfigError(
            f'--ckpt_path {path} was trained on {trained}-band images, but the data delivers {bands} bands; use the '
            f'data options the checkpoint was trained with (its config.yaml beside checkpoints/)'
        )
