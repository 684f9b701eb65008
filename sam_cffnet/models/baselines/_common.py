"""Loading ImageNet (or any) weights for a baseline's encoder from a local file, never from the internet."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ...checkpoint import WEIGHT_FILE_ARGS, load_checkpoint_file
from ...errors import CheckpointError

__all__ = ['adapt_first_conv', 'load_backbone_weights', 'pad_to_multiple']

#: key prefixes stripped when matching a file's keys to the encoder's (tried in turn, the best match wins).
_PREFIXES = ('', 'encoder.', 'model.encoder.', 'backbone.', 'model.backbone.', 'module.', 'model.', 'state_dict.')


def _unwrap(raw: object) -> Mapping[str, Tensor]:
    """The tensor dict inside a checkpoint (``state_dict`` / ``model`` / ``module`` wrappers are opened)."""
    for _ in range(3):
        if isinstance(raw, Mapping) and not any(isinstance(v, Tensor) for v in raw.values()):
            for key in ('state_dict', 'model', 'module', 'model_state'):
                if isinstance(raw.get(key), Mapping):
                    raw = raw[key]
                    break
            else:
                break
    if not isinstance(raw, Mapping):
        raise CheckpointError('expected a state dict (a mapping of parameter names to tensors)')
    return {k: v for k, v in raw.items() if isinstance(v, Tensor)}


def load_backbone_weights(
    encoder: nn.Module, path: str | os.PathLike[str], in_channels: int = 3, min_fraction: float = 0.9
) -> None:
    """Load pretrained weights into a 3-band encoder, then adapt its first convolution to ``in_channels``.

    The file may be a bare state dict (timm / torchvision / smp / NVlabs SegFormer ImageNet files) or a training
    checkpoint holding one under ``state_dict`` / ``model``; the key prefix (``''``, ``encoder.``, ``backbone.``,
    ``module.``, ...) that matches the most encoder tensors by name and shape is used, and classifier keys that the
    encoder does not have are ignored.

    Args:
        encoder: the encoder, built for 3 input bands and random weights.
        path: the local weights file (nothing is downloaded).
        in_channels: the bands the model takes; for more or fewer than 3 the first convolution's weights are cycled
            over the bands and rescaled (segmentation-models-pytorch's rule).
        min_fraction: the fraction of the encoder's tensors that must be found in the file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file does not hold weights for this encoder.
    """
    state = _unwrap(load_checkpoint_file(path, expected=WEIGHT_FILE_ARGS['backbone_weights']))
    expected = encoder.state_dict()
    best: dict[str, Tensor] = {}
    for prefix in _PREFIXES:
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        match = {k: v for k, v in sub.items() if k in expected and v.shape == expected[k].shape}
        if len(match) > len(best):
            best = match
    if len(best) < min_fraction * len(expected):
        example = next(iter(expected), '')
        raise CheckpointError(
            f"{path}: only {len(best)} of the encoder's {len(expected)} tensors were found with matching names and "
            f'shapes (expected keys like {example!r}); is it the ImageNet file for this encoder?'
        )
    missing = sorted(set(expected) - set(best))
    if missing:
        warnings.warn(f'{path}: {len(missing)} encoder tensors keep their random init: {missing[:3]}', stacklevel=2)
    nn.Module.load_state_dict(encoder, best, strict=False)  # smp's MiT overrides load_state_dict without strict
    if in_channels != 3:
        adapt_first_conv(encoder, in_channels)


def adapt_first_conv(module: nn.Module, in_channels: int) -> None:
    """Give the first 3-band convolution of ``module`` ``in_channels`` inputs, keeping its pretrained filters.

    The RGB filters are cycled over the new bands and rescaled by ``3 / in_channels`` (summed for one band), so that
    an input whose bands all look alike gives the same response (segmentation-models-pytorch's rule).
    """
    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3), None)
    if conv is None or in_channels == 3:
        return
    weight = conv.weight.detach()
    if in_channels == 1:
        new = weight.sum(1, keepdim=True)
    else:
        new = torch.stack([weight[:, i % 3] for i in range(in_channels)], dim=1) * (3 / in_channels)
    conv.in_channels = in_channels
    conv.weight = nn.Parameter(new.contiguous())


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Zero-pad the bottom/right of B x C x H x W so that H and W are multiples of ``multiple``.

    Returns:
        ``(padded, (H, W))``: the padded batch and the original size, for cropping the output back.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        x = nn.functional.pad(x, (0, pw, 0, ph))
    return x, (h, w)
