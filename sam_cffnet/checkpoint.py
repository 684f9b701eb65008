"""Safe loading of checkpoint files downloaded from the internet.

Every checkpoint in this package is read with ``torch.load(..., weights_only=True)``: a malicious pickle cannot run
code, it fails to load instead, and the message never suggests loading it unsafely.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
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

#: torch's words for a pickle that names a Python object to import (older and newer torch releases).
_UNSAFE_GLOBAL = re.compile(r'(?:Unsupported global: GLOBAL|Trying to load unsupported GLOBAL) ([\w.]+)')
#: File signatures of things people pass by mistake, for messages.
_SIGNATURES = {b'\x89PNG': 'a PNG image', b'\xff\xd8\xff': 'a JPEG image', b'II*\x00': 'a TIFF', b'MM\x00*': 'a TIFF',
               b'\x89HDF': 'an HDF5 file', b'PK\x03\x04': 'a zip archive'}  # fmt: skip


def _looks_like(path: Path) -> str:
    """What ``path`` seems to hold, from its first bytes (``''`` when unknown)."""
    with open(path, 'rb') as f:
        head = f.read(512)
    for signature, name in _SIGNATURES.items():
        if head.startswith(signature):
            return name
    try:
        head.decode('utf-8')
    except UnicodeDecodeError:
        return ''
    return 'a text file'


def load_checkpoint_file(
    path: str | os.PathLike[str],
    map_location: str | torch.device = 'cpu',
    expected: str = 'a PyTorch checkpoint',
    mmap: bool = False,
) -> Any:
    """Load a checkpoint with ``weights_only=True``.

    Args:
        path: the file.
        map_location: where tensors go.
        expected: what the file should be, for messages (e.g. ``WEIGHT_FILE_ARGS['sam_checkpoint']``).
        mmap: map the tensors' storage from the file instead of reading it (a cheap check of a large file; needs
            the zip format of ``torch.save`` since PyTorch 1.6).

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
    if p.stat().st_size == 0:
        raise CheckpointError(f'{p} is empty (0 bytes; an interrupted copy or download?); expected {expected}')
    kind = _looks_like(p)
    if kind and kind != 'a zip archive':
        raise CheckpointError(f'{p} is {kind}, not a PyTorch checkpoint; expected {expected}')
    zipped = zipfile.is_zipfile(p)
    if kind == 'a zip archive' and not zipped:  # torch.save's zip without its closing directory
        raise CheckpointError(
            f'{p} is not a readable PyTorch checkpoint (the file ends early: truncated, or still being written); '
            f'expected {expected}'
        )
    try:
        return torch.load(p, map_location=map_location, weights_only=True, mmap=(mmap and zipped) or None)
    except pickle.UnpicklingError as err:
        found = _UNSAFE_GLOBAL.search(str(err))
        if found:
            raise CheckpointError(
                f'{p} is refused: it holds Python code to run when loaded ({found.group(1)}), and this package loads '
                f'tensors only; expected {expected}'
            ) from None
        raise CheckpointError(
            f'{p} is not a PyTorch checkpoint (corrupt, or another kind of file); expected {expected}'
        ) from None
    except Exception as err:  # torch raises many kinds (RuntimeError, EOFError, IndexError, BadZipFile, ...)
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        if 'central directory' in detail or isinstance(err, EOFError):
            detail = 'the file ends early: truncated, or still being written'
        elif 'weights_only' in detail:  # never pass on torch's advice to load it unsafely
            detail = type(err).__name__
        raise CheckpointError(f'{p} is not a readable PyTorch checkpoint ({detail}); expected {expected}') from err
