"""The one mapping between the authors' SAM-CFFNet checkpoint keys and ours.

The authors' ``{BJL,L4S,GVLM}_best.pth.tar`` files hold ``{'epoch', 'state_dict', 'optimizer'}``; the state dict
has ``image_encoder.*`` (SAM ViT-L, including its unused neck) and ``decoder.*`` keys. Because the reference
builds ``nn.ModuleList([m] * 4)``, the shared modules appear four times (``.0``-``.3``) with equal tensors.

| reference key | ours |
|---|---|
| ``image_encoder.<k>`` | ``encoder.vit.<k>`` (``neck.*`` dropped: never used) |
| ``decoder.cdffm.MLP_1.<i>.<k>`` / ``MLP_2`` / ``necks`` | ``decoder.cffm.fam.<i>.mlp1.<k>`` / ``mlp2`` / ``neck`` |
| ``decoder.cdffm.convs<s>.<i>.<k>`` | ``decoder.cffm.fusion.<s-1>.<i>.<k>`` |
| ``decoder.marges.<k>`` | ``decoder.merge.<k>`` |
| ``decoder.sfe.down_for.<k>`` | ``decoder.sfe.down.<k>`` |
| ``decoder.sfe.atts.W_g`` / ``W_x`` / ``psi`` | ``decoder.sfe.gate.g_proj`` / ``x_proj`` / ``psi`` |
| ``decoder.last_layer.<k>`` | ``decoder.head.<k>`` |

With a shared model (the default) index ``.0`` is read and ``.1``-``.3`` are checked to be equal; an unshared model
takes each index into its own module.
"""

from __future__ import annotations

import os
import re

import torch
from torch import Tensor, nn

from ..checkpoint import WEIGHT_FILE_ARGS, load_checkpoint_file
from ..errors import CheckpointError
from .encoders.sam import describe_encoder_weights

__all__ = ['load_reference_checkpoint', 'ours_to_reference', 'reference_to_ours']

_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r'^image_encoder\.(.*)$'), r'encoder.vit.\1'),
    (re.compile(r'^decoder\.cdffm\.MLP_1\.(\d)\.(.*)$'), r'decoder.cffm.fam.\1.mlp1.\2'),
    (re.compile(r'^decoder\.cdffm\.MLP_2\.(\d)\.(.*)$'), r'decoder.cffm.fam.\1.mlp2.\2'),
    (re.compile(r'^decoder\.cdffm\.necks\.(\d)\.(.*)$'), r'decoder.cffm.fam.\1.neck.\2'),
    (re.compile(r'^decoder\.cdffm\.convs1\.(\d)\.(.*)$'), r'decoder.cffm.fusion.0.\1.\2'),
    (re.compile(r'^decoder\.cdffm\.convs2\.(\d)\.(.*)$'), r'decoder.cffm.fusion.1.\1.\2'),
    (re.compile(r'^decoder\.cdffm\.convs3\.(\d)\.(.*)$'), r'decoder.cffm.fusion.2.\1.\2'),
    (re.compile(r'^decoder\.marges\.(.*)$'), r'decoder.merge.\1'),
    (re.compile(r'^decoder\.sfe\.down_for\.(.*)$'), r'decoder.sfe.down.\1'),
    (re.compile(r'^decoder\.sfe\.atts\.W_g\.(.*)$'), r'decoder.sfe.gate.g_proj.\1'),
    (re.compile(r'^decoder\.sfe\.atts\.W_x\.(.*)$'), r'decoder.sfe.gate.x_proj.\1'),
    (re.compile(r'^decoder\.sfe\.atts\.psi\.(.*)$'), r'decoder.sfe.gate.psi.\1'),
    (re.compile(r'^decoder\.last_layer\.(.*)$'), r'decoder.head.\1'),
]
_SHARED = re.compile(r'^(decoder\.cffm\.(?:fam|fusion\.\d))\.(\d)\.(.*)$')


def _map_key(key: str) -> str | None:
    if key.startswith('image_encoder.neck.'):
        return None
    for pattern, repl in _RULES:
        if pattern.match(key):
            return pattern.sub(repl, key)
    raise CheckpointError(f'unexpected key in a SAM-CFFNet reference checkpoint: {key}')


def reference_to_ours(state_dict: dict[str, Tensor], shared: bool = True) -> dict[str, Tensor]:
    """Map a reference state dict to our names.

    Args:
        state_dict: the reference model's ``state_dict`` (keys ``image_encoder.*``, ``decoder.*``).
        shared: map to a shared CFFD (read ``.0``, check that ``.1``-``.3`` equal it) or an unshared one
            (``.i`` -> ``.i``).

    Raises:
        CheckpointError: an unknown key, or shared copies that differ while ``shared`` is True.
    """
    out: dict[str, Tensor] = {}
    copies: list[tuple[str, str, Tensor]] = []
    for key, value in state_dict.items():
        ours = _map_key(key)
        if ours is None:
            continue
        m = _SHARED.match(ours)
        if m and shared and m.group(2) != '0':
            copies.append((key, f'{m.group(1)}.0.{m.group(3)}', value))
            continue
        out[ours] = value
    for key, canonical, value in copies:
        if canonical in out and not torch.equal(out[canonical], value):
            raise CheckpointError(
                f'{key} differs from its copy .0: this checkpoint has unshared CFFD weights; build the model with '
                f'shared=False'
            )
    return out


def ours_to_reference(state_dict: dict[str, Tensor], sam_neck: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Map our state dict back to the reference's names (shared modules written 4 times, as the reference does).

    Args:
        state_dict: our model's state dict (``encoder.vit.*``, ``decoder.*``), shared or unshared.
        sam_neck: SAM's neck weights (``neck.*``), which we never build; zeros of the ViT-L shapes when omitted,
            so that the reference code can load the file ``strict=True``.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        m = _SHARED.match(key)
        keys = [key]
        if m and m.group(2) == '0' and f'{m.group(1)}.1.{m.group(3)}' not in state_dict:
            keys = [f'{m.group(1)}.{i}.{m.group(3)}' for i in range(4)]
        for k in keys:
            out[_inverse_key(k)] = value
    neck_shapes = {
        'neck.0.weight': (256, 1024, 1, 1),
        'neck.1.weight': (256,),
        'neck.1.bias': (256,),
        'neck.2.weight': (256, 256, 3, 3),
        'neck.3.weight': (256,),
        'neck.3.bias': (256,),
    }
    for k, shape in neck_shapes.items():
        out[f'image_encoder.{k}'] = sam_neck[k] if sam_neck and k in sam_neck else torch.zeros(shape)
    return out


_INVERSE = [
    (re.compile(r'^encoder\.vit\.(.*)$'), r'image_encoder.\1'),
    (re.compile(r'^decoder\.cffm\.fam\.(\d)\.mlp1\.(.*)$'), r'decoder.cdffm.MLP_1.\1.\2'),
    (re.compile(r'^decoder\.cffm\.fam\.(\d)\.mlp2\.(.*)$'), r'decoder.cdffm.MLP_2.\1.\2'),
    (re.compile(r'^decoder\.cffm\.fam\.(\d)\.neck\.(.*)$'), r'decoder.cdffm.necks.\1.\2'),
    (re.compile(r'^decoder\.cffm\.fusion\.0\.(\d)\.(.*)$'), r'decoder.cdffm.convs1.\1.\2'),
    (re.compile(r'^decoder\.cffm\.fusion\.1\.(\d)\.(.*)$'), r'decoder.cdffm.convs2.\1.\2'),
    (re.compile(r'^decoder\.cffm\.fusion\.2\.(\d)\.(.*)$'), r'decoder.cdffm.convs3.\1.\2'),
    (re.compile(r'^decoder\.merge\.(.*)$'), r'decoder.marges.\1'),
    (re.compile(r'^decoder\.sfe\.down\.(.*)$'), r'decoder.sfe.down_for.\1'),
    (re.compile(r'^decoder\.sfe\.gate\.g_proj\.(.*)$'), r'decoder.sfe.atts.W_g.\1'),
    (re.compile(r'^decoder\.sfe\.gate\.x_proj\.(.*)$'), r'decoder.sfe.atts.W_x.\1'),
    (re.compile(r'^decoder\.sfe\.gate\.psi\.(.*)$'), r'decoder.sfe.atts.psi.\1'),
    (re.compile(r'^decoder\.head\.(.*)$'), r'decoder.last_layer.\1'),
]


def _inverse_key(key: str) -> str:
    for pattern, repl in _INVERSE:
        if pattern.match(key):
            return pattern.sub(repl, key)
    raise KeyError(f'{key} has no counterpart in the reference model')


def load_reference_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load an authors' checkpoint into a :class:`~sam_cffnet.models.SAMCFFNet`.

    Every tensor is checked for name and shape.

    Raises:
        FileNotFoundError / CheckpointError: missing, unreadable or foreign file (the message names it).
    """
    raw = load_checkpoint_file(path, expected=WEIGHT_FILE_ARGS['reference_checkpoint'])
    state = raw.get('state_dict') if isinstance(raw, dict) else None
    if state is None and isinstance(raw, dict) and any(str(k).startswith('decoder.') for k in raw):
        state = raw
    if not isinstance(state, dict) or not any(k.startswith('decoder.cdffm.') for k in state):
        raise CheckpointError(
            f'{path} is not a SAM-CFFNet reference checkpoint (expected {{"epoch", "state_dict", "optimizer"}} with '
            f'keys image_encoder.* and decoder.cdffm.*, as in the released BJL/L4S/GVLM_best.pth.tar)'
        )
    if not any(k.startswith('image_encoder.') for k in state):
        raise CheckpointError(f'{path}: the reference checkpoint holds no image_encoder.* weights')
    ours = reference_to_ours(state, shared=model.decoder.cffm.shared)
    # The encoder goes through the encoder's own loader (size check with a clear message).
    encoder_state = {k[len('encoder.vit.') :]: v for k, v in ours.items() if k.startswith('encoder.vit.')}
    embed = encoder_state['patch_embed.proj.weight'].shape[0]
    if embed != model.encoder.embed_dim:
        raise CheckpointError(
            f'{path} holds a SAM {describe_encoder_weights(encoder_state)} encoder, '
            f'the model is {model.encoder.variant}'
        )
    expected = model.state_dict()
    missing = sorted(set(expected) - set(ours))
    unexpected = sorted(set(ours) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f'{path}: key mismatch after mapping; missing {missing[:5]}, unexpected {unexpected[:5]}')
    for k, v in ours.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(
                f'{path}: {k} has shape {tuple(v.shape)}, the model expects {tuple(expected[k].shape)}'
            )
    model.load_state_dict(ours, strict=True)
    model.encoder.checkpoint_path = os.fspath(path)
