"""Speed options of the frozen SAM encoder: memory-efficient attention, bf16 autocast, channels-last.

segment_anything's ``Attention.forward`` materializes the full attention matrix (B*heads x N x N, N = tokens) and
adds the decomposed relative position bias to it in two more full-size temporaries. For the global-attention blocks
of ViT-L at 1024 px (N = 4096, 16 heads) that is about 1 GiB per temporary and image. :class:`SDPAAttention` computes
the same function with :func:`torch.nn.functional.scaled_dot_product_attention`, the relative position bias given
as ``attn_mask`` and built chunk by chunk over the queries, so at most ``mask_budget`` bias elements exist at a time
(fused kernels: flash/efficient on CUDA, the flash CPU kernel on CPU).

The options are applied to an existing :class:`~sam_cffnet.models.encoders.sam.SAMEncoder` by
:func:`configure_encoder_speed`, without changing any state-dict key:

* ``attention='sdpa'`` swaps the class of every block's attention module to :class:`SDPAAttention` (a subclass
  of segment_anything's ``Attention`` with the same parameters); ``'reference'`` restores the original class.
  Numerically equal to the reference in fp32 (max abs difference ~1e-6 on the features, checked in the tests).
* ``autocast='bf16'`` runs the ViT under ``torch.autocast(device, bfloat16)`` and returns float32 features. Fast on
  GPUs and on CPUs with ``avx512_bf16``/AMX; slow (emulated) elsewhere. Features differ from fp32 by bf16 rounding
  (relative ~1e-2).
* ``channels_last=True`` feeds the patch-embedding convolution in channels-last memory format (the transformer
  blocks work on B x h x w x C tokens already); a small gain on CPU, none to measure on most GPUs.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import Tensor, nn

from ...errors import ConfigError

__all__ = [
    'AttentionMode',
    'AutocastMode',
    'EncoderSpeedOptions',
    'SDPAAttention',
    'configure_encoder_speed',
    'sdpa_attention',
]

AttentionMode = Literal['reference', 'sdpa']
AutocastMode = Literal['none', 'bf16']

#: Default number of relative-position-bias elements built at once per attention call (64 MiB in fp32).
DEFAULT_MASK_BUDGET = 2**24


@dataclass(frozen=True)
class EncoderSpeedOptions:
    """The speed switches of a SAM encoder (see the module docstring for their effect).

    Attributes:
        attention: ``'reference'`` (segment_anything's attention) or ``'sdpa'`` (memory-efficient).
        autocast: ``'none'`` (fp32) or ``'bf16'``.
        channels_last: channels-last input of the patch-embedding convolution.
    """

    attention: AttentionMode = 'reference'
    autocast: AutocastMode = 'none'
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.attention not in ('reference', 'sdpa'):
            raise ConfigError(f"attention must be 'reference' or 'sdpa', got {self.attention!r}")
        if self.autocast not in ('none', 'bf16'):
            raise ConfigError(f"autocast must be 'none' or 'bf16', got {self.autocast!r}")


def sdpa_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    rel_h: Tensor | None,
    rel_w: Tensor | None,
    mask_budget: int = DEFAULT_MASK_BUDGET,
) -> Tensor:
    """Softmax attention with an optional decomposed relative position bias, chunked over the queries.

    Computes ``softmax(q k^T / sqrt(d) + bias) v`` with ``bias[b, n, i, (kh, kw)] = rel_h[b, n, i, kh] +
    rel_w[b, n, i, kw]``, building the bias for at most ``mask_budget`` elements at a time.

    Args:
        q: B x heads x N x d queries (N = qh * qw).
        k: B x heads x N x d keys, on a kh x kw grid.
        v: B x heads x N x d values.
        rel_h: B x heads x N x kh height term of the bias, or None (no bias).
        rel_w: B x heads x N x kw width term of the bias.
        mask_budget: largest number of bias elements materialized per SDPA call.

    Returns:
        B x heads x N x d.
    """
    if rel_h is None or rel_w is None:
        return F.scaled_dot_product_attention(q, k, v)
    b, heads, n, _ = q.shape
    kh, kw = rel_h.shape[-1], rel_w.shape[-1]
    per_query = b * heads * kh * kw
    chunk = max(1, min(n, mask_budget // max(per_query, 1)))
    outs = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        bias = (rel_h[:, :, start:stop, :, None] + rel_w[:, :, start:stop, None, :]).reshape(b, heads, -1, kh * kw)
        outs.append(F.scaled_dot_product_attention(q[:, :, start:stop], k, v, attn_mask=bias.to(q.dtype)))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


class SDPAAttention(Attention):
    """segment_anything ``Attention`` computed with ``scaled_dot_product_attention`` (same parameters and keys).

    Attributes:
        mask_budget: largest number of relative-position-bias elements built at once (bounds the memory of the
            global-attention blocks; the windowed blocks fit in one call).
    """

    mask_budget: int = DEFAULT_MASK_BUDGET

    def forward(self, x: Tensor) -> Tensor:
        """Attention over the tokens of B x H x W x C, returning B x H x W x C."""
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # B x heads x N x d
        rel_h = rel_w = None
        if self.use_rel_pos:
            rh = get_rel_pos(h, h, self.rel_pos_h).to(q.dtype)  # h x h x d
            rw = get_rel_pos(w, w, self.rel_pos_w).to(q.dtype)  # w x w x d
            r_q = q.reshape(b, self.num_heads, h, w, -1)
            rel_h = torch.einsum('bnhwc,hkc->bnhwk', r_q, rh).reshape(b, self.num_heads, h * w, h)
            rel_w = torch.einsum('bnhwc,wkc->bnhwk', r_q, rw).reshape(b, self.num_heads, h * w, w)
        out = sdpa_attention(q, k, v, rel_h, rel_w, self.mask_budget)
        out = out.transpose(1, 2).reshape(b, h, w, -1)
        return self.proj(out)


def _set_attention_class(vit: nn.Module, mode: AttentionMode) -> None:
    for module in vit.modules():
        if isinstance(module, Attention):
            module.__class__ = SDPAAttention if mode == 'sdpa' else Attention


def _fast_forward_features(self: Any, x: Tensor) -> list[Tensor]:
    """``SAMEncoder.forward_features`` under the encoder's autocast / channels-last options (float32 out)."""
    opts: EncoderSpeedOptions = self.speed_options
    if opts.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if opts.autocast == 'none':
        return type(self).forward_features(self, x)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        feats = type(self).forward_features(self, x)
    return [f.to(x.dtype) for f in feats]


def configure_encoder_speed(
    encoder: nn.Module,
    attention: AttentionMode = 'reference',
    autocast: AutocastMode = 'none',
    channels_last: bool = False,
) -> EncoderSpeedOptions:
    """Apply the speed options to a SAM encoder in place (state-dict keys unchanged).

    Args:
        encoder: a :class:`~sam_cffnet.models.encoders.sam.SAMEncoder` (anything with ``vit`` and
            ``forward_features``).
        attention: ``'reference'`` or ``'sdpa'``.
        autocast: ``'none'`` or ``'bf16'``.
        channels_last: channels-last patch embedding.

    Returns:
        The options, also stored as ``encoder.speed_options``.
    """
    opts = EncoderSpeedOptions(attention, autocast, bool(channels_last))
    _set_attention_class(encoder.vit, opts.attention)
    encoder.speed_options = opts
    if opts.channels_last:
        encoder.vit.patch_embed.proj.to(memory_format=torch.channels_last)
    if opts.autocast != 'none' or opts.channels_last:
        encoder.forward_features = types.MethodType(_fast_forward_features, encoder)
    else:
        encoder.__dict__.pop('forward_features', None)
    return opts
