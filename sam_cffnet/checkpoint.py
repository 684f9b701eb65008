"""Safe loading of checkpoint files downloaded from the internet.

Every checkpoint in this package is read with ``torch.load(..., weights_only=True)``: a malicious pickle cannot run
code, it fails to load instead.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

__all__ = ['WEIGHT_FILE_ARGS', 'CheckpointError', 'load_checkpoint_file']

#: Model arguments (``model_args``) that name weight files, with what the file must be (for messages, for the CLI's
#: check before any work starts, and for reports that count parameters without reading weights).
WEIGHT_FILE_ARGS: dict[str, str] = {
    'sam_checkpoint': 'official SAM weights sam_vit_{b,l,h}_*.pth',
    'reference_checkpoint': "the SAM-CFFNet authors' {BJL,L4S,GVLM}_best.pth.tar",
    'encoder_weights': "the baseline encoder's ImageNet weights",
}


class CheckpointError(ValueError):
    """A file that should be a checkpoint cannot be used as one."""


def load_checkpoint_file(path: str | os.PathLike[str], map_location: str | torch.device = 'cpu') -> Any:
    """Load a checkpoint with ``weights_only=True``.

    Args:
        path: the file.
        map_location: where tensors go.

    Returns:
        Whatever the file holds (usually a dict of tensors or a dict with a ``state_dict``).

    Raises:
        FileNotFoundError: the path does not exist (the message says where SAM weights come from).
        CheckpointError: the file is not a PyTorch checkpoint, is truncated, or needs unsafe unpickling.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f'checkpoint not found: {p} (official SAM weights sam_vit_{{b,l,h}}_*.pth come from '
            f'https://github.com/facebookresearch/segment-anything#model-checkpoints; see checkpoints/README.md)'
        )
    if p.is_dir():
        raise CheckpointError(f'{p} is a folder, expected a checkpoint file (.pth, .pth.tar or .ckpt)')
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f'{p} could not be loaded with weights_only=True (it is not a plain PyTorch checkpoint, or it needs '
            f'arbitrary code to unpickle, which is refused for safety): {str(err).splitlines()[0]}'
        ) from err
    except Exception as err:  # torch raises many kinds (RuntimeError, EOFError, IndexError, BadZipFile, ...)
        raise CheckpointError(
            f'{p} is not a readable PyTorch checkpoint (truncated or another kind of file): {str(err).splitlines()[0]}'
        ) from err
