"""Safe loading of checkpoint files downloaded from the internet.

Every checkpoint in this package is read with ``torch.load(..., weights_only=True)``: a malicious pickle cannot run
code, it fails to load instead, and the message never suggests loading it unsafely.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, MissingFileError

__all__ = ['WEIGHT_FILE_ARGS', 'CheckpointError', 'load_checkpoint_file']

#: Model arguments that name weight files, with what the file must be (for messages, for the CLI's check before any
#: work starts, and for reports that count parameters without reading weights).
WEIGHT_FILE_ARGS: dict[str, str] = {
    'sam_checkpoint': 'official SAM weights sam_vit_{b,l,h}_*.pth (see checkpoints/README.md)',
    'reference_checkpoint': "the SAM-CFFNet authors' {BJL,L4S,GVLM}_best.pth.tar (see checkpoints/README.md)",
    'backbone_weights': "the baseline backbone's ImageNet weights (a local .pth file)",
}

_UNSAFE_GLOBAL = re.compile(r'Unsupported global: GLOBAL ([\w.]+)')


def load_checkpoint_file(
    path: str | os.PathLike[str], map_location: str | torch.device = 'cpu', expected: str = 'a PyTorch checkpoint'
) -> Any:
    """Load a checkpoint with ``weights_only=True``.

    Args:
        path: the file.
        map_location: where tensors go.
        expected: what the file should be, for messages (e.g. ``WEIGHT_FILE_ARGS['sam_checkpoint']``).

    Returns:
        Whatever the file holds (usually a dict of tensors or a dict with a ``state_dict``).

    Raises:
        MissingFileError: the path does not exist.
        CheckpointError: the file is a folder, not a PyTorch checkpoint, truncated, or would need unsafe unpickling.
    """
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f'{p} does not exist (expected {expected})')
    if p.is_dir():
        raise CheckpointError(f'{p} is a folder, expected a file: {expected}')
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = _UNSAFE_GLOBAL.search(str(err))
        if found:
            raise CheckpointError(
                f'{p} is refused: it stores Python objects ({found.group(1)}) that would run code when loaded, which '
                f'this package never does; expected {expected} holding tensors only'
            ) from None
        raise CheckpointError(
            f'{p} is not a PyTorch checkpoint (corrupt, or another kind of file); expected {expected}'
        ) from None
    except Exception as err:  # torch raises many kinds (RuntimeError, EOFError, IndexError, BadZipFile, ...)
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f'{p} is not a readable PyTorch checkpoint (truncated or another kind of file: {detail}); '
            f'expected {expected}'
        ) from err
