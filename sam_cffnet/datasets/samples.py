"""What a served sample is: tensors padded to the tile size, and where a served tile comes from."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ['pad_to', 'tile_source_dict']


def pad_to(tensor: Tensor, height: int, width: int, value: float = 0) -> Tensor:
    """Pad the last two dims of a tensor at the bottom/right to at least ``height x width``.

    Args:
        tensor: Tensor ``(..., H, W)``.
        height: Target height.
        width: Target width.
        value: Pad value.

    Returns:
        Tensor ``(..., max(H, height), max(W, width))``.
    """
    ph, pw = max(0, height - tensor.shape[-2]), max(0, width - tensor.shape[-1])
    if ph == 0 and pw == 0:
        return tensor
    return torch.nn.functional.pad(tensor, (0, pw, 0, ph), value=value)


def tile_source_dict(
    name: str, height: int, width: int, window: tuple[int, int, int] | None = None, tiles: int = 1
) -> dict[str, Any]:
    """Where a served tile comes from (a dataset's ``tile_source(index)``), for writers of predictions.

    Args:
        name: the source file's name without extension (``df001``): outputs are named after it.
        height: the source's height in pixels.
        width: the source's width in pixels.
        window: ``(row, col, size)`` of the tile in the source (bottom/right parts past the source's edge are
            padding), or ``None`` when the tile is the whole source resized to the tile size.
        tiles: how many tiles the source gives (its prediction is complete when all were predicted).

    Returns:
        ``{'name', 'height', 'width', 'window', 'tiles'}``.
    """
    return {'name': str(name), 'height': int(height), 'width': int(width),
            'window': None if window is None else tuple(int(v) for v in window), 'tiles': int(tiles)}  # fmt: skip
