"""TransLandSeg's adaptive transfer learning (ATL) modules, injected into the frozen SAM ViT.

Two families, both :class:`~sam_cffnet.models.encoders.sam.BlockInjector` subclasses:

:class:`PromptATL` (``'mlp'``, the default, ``'mlp2'``, ``'conv'``) is the ATL of the authors' released code (an
EVP-style "prompt generator", inherited from SAM-Adapter). From the input image and the patch tokens it computes,
once per image, a ``dim``-channel (32) feature per token:

* a *frequency* (handcrafted) branch: FFT high-pass of the encoder input (the centred low-frequency square covering
  ``freq_nums`` = 0.25 of the spectrum is zeroed, see :func:`highpass_fft`), its absolute value, then a 16 x 16
  stride-16 patch convolution 3 -> ``dim``;
* an *embedding* branch: a linear map C -> ``dim`` of the patch tokens, taken *before* the absolute position
  embedding is added (as in the reference). By default (``embedding_reshape='per_token'``) it is applied to each
  token, as the paper describes. The released code does not do that: ``PromptGenerator.init_embeddings``
  (JunchuanYu/TransLandSeg ``models/mmseg/models/sam/image_encoder.py:289-292``) applies
  ``x.reshape(N, C, H*W).permute(0, 2, 1)`` to the *channels-last* N x H x W x C patch tokens, so its "token" j is
  the j-th column of the flat H*W*C buffer cut into C rows of H*W values: it mixes one channel of many tokens
  instead of all channels of one token (ViT-L, 64 x 64 x 1024: "token" j holds channel j mod 1024 of the tokens
  4 c + j // 1024, c = 0..1023). ``embedding_reshape='reference'`` reproduces that exactly;

and their sum goes, for every block i, through a per-block module and is added to the tokens that enter block i
(``x <- x + prompt_i``):

* ``'mlp'``: Linear(dim, dim) + GELU per block, then one up-projection Linear(dim, C) shared by all blocks
  (ViT-L: 116,544 parameters);
* ``'mlp2'``: two Linear(dim, dim) + GELU layers per block, then the shared up-projection (reference "2_MidLay_m");
* ``'conv'``: per block 1x1 conv -> LayerNorm2d -> GELU -> depthwise 3x3 conv -> LayerNorm2d -> GELU -> 1x1 conv to C
  -> LayerNorm2d -> GELU, no shared projection (reference "3_MidLay_c").

:class:`SpaceATL` (``'space'``) is the reference's ``image_encoder2.py`` "Space_Adapter": an adapter inside every block
on the attention output, before the attention residual add (Linear C -> C/4, GELU, Linear C/4 -> C, then one
1x1 conv C -> C + LayerNorm2d + GELU applied three times with the same instances), with or without its own skip
connection (``a + adapter(a)`` versus ``adapter(a)``). The paper's main ablation finding is about *where* the ATL sits
and whether it has a residual connection, so both are switchable: ``location='after_attention'`` (reference) or
``'pre_block'`` (the same adapter on the tokens entering the block), and ``skip``.

Initialisation of the prompt ATLs follows the reference's ``PromptGenerator._init_weights``: trunc-normal(std 0.02)
linear weights, zero biases, He-normal (fan-out) conv weights. The space adapter uses the same scheme by default;
the reference's ``Adapter`` (``image_encoder2.py:647-657``) has no init of its own and keeps PyTorch's defaults
(``space_init='default'``), and the reference's freezing rule (``train.py:116-118``: every parameter whose name contains
``image_encoder`` and not ``prompt_generator`` is frozen) freezes it, because it lives inside the encoder's blocks:
``trainable=False`` reproduces that (the adapters then stay at their random initial values).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from segment_anything.modeling.common import LayerNorm2d
from torch import Tensor, nn

from ...errors import ConfigError
from ..encoders.sam import PATCH_SIZE, BlockInjector

__all__ = [
    'ATL_KINDS',
    'PromptATL',
    'SpaceATL',
    'build_atl',
    'highpass_fft',
    'lowfreq_square',
    'reference_token_reshape',
]

#: The selectable ATL structures (``'mlp'`` is the released code's default).
ATL_KINDS = ('mlp', 'mlp2', 'conv', 'space')
ATLKind = Literal['mlp', 'mlp2', 'conv', 'space']
#: How the embedding branch reads the patch tokens: ``'per_token'`` (ours, the paper) or ``'reference'`` (the released
#: code's reshape, see the module docstring).
EmbeddingReshape = Literal['per_token', 'reference']
#: Initialisation of the space adapter: ``'trunc_normal'`` (ours) or ``'default'`` (PyTorch's, the reference's).
SpaceInit = Literal['trunc_normal', 'default']


def lowfreq_square(height: int, width: int, rate: float = 0.25) -> tuple[int, int, int, int]:
    """Bounds of the low-frequency square the reference zeroes in the centred (``fftshift``-ed) spectrum.

    The reference computes ``line = int(sqrt(H * W * rate) // 2)`` and zeroes rows ``H//2 - line : H//2 + line`` and
    columns ``W//2 - line : W//2 + line``, i.e. a 2·line square around the DC term covering ``rate`` of a square
    spectrum (0.25: the central 512 x 512 of a 1024 x 1024 spectrum).

    Returns:
        ``(row_start, row_stop, col_start, col_stop)`` in the shifted spectrum (stop exclusive).
    """
    line = int(math.sqrt(height * width * rate) // 2)
    return height // 2 - line, height // 2 + line, width // 2 - line, width // 2 + line


def highpass_fft(x: Tensor, rate: float = 0.25, absolute: bool = True) -> Tensor:
    """FFT high-pass of an image batch, as TransLandSeg's (EVP's) frequency branch.

    ``fftshift(fft2(x))``, the low-frequency square of :func:`lowfreq_square` set to zero, ``ifft2(ifftshift(.))``,
    real part, then the absolute value (reference). Half-precision inputs are transformed in float32 (FFTs do not
    support bfloat16); the result has the input's dtype.

    Args:
        x: B x C x H x W images.
        rate: fraction of the spectrum covered by the removed square (reference ``freq_nums`` = 0.25).
        absolute: take the absolute value of the result (reference: yes).

    Returns:
        B x C x H x W high-passed images.
    """
    h, w = x.shape[-2:]
    r0, r1, c0, c1 = lowfreq_square(h, w, rate)
    # The reference shifts all dimensions (batch and channel too) and back; the mask is the same for every image and
    # band, so shifting the two spatial ones is the same operation.
    work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    spec = torch.fft.fftshift(torch.fft.fft2(work, norm='forward'), dim=(-2, -1))
    spec[..., r0:r1, c0:c1] = 0
    out = torch.fft.ifft2(torch.fft.ifftshift(spec, dim=(-2, -1)), norm='forward').real
    if absolute:
        out = out.abs()
    return out.to(x.dtype)


def _init_weights(m: nn.Module) -> None:
    """The reference's ``PromptGenerator._init_weights``."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def reference_token_reshape(tokens: Tensor) -> Tensor:
    """The released TransLandSeg code's reading of channels-last tokens in its embedding branch.

    ``PromptGenerator.init_embeddings`` (``image_encoder.py:289-292``) does ``x.reshape(N, C, H*W).permute(0, 2, 1)``
    on the N x H x W x C patch tokens: a reshape meant for channels-first maps. Element ``[n, j, c]`` of its result
    is element ``c * H * W + j`` of the (logically) flattened H x W x C tokens of image n. Its prompt j is later
    added at grid position ``(j // W, j % W)``, which this function returns directly.

    Args:
        tokens: B x h x w x C.

    Returns:
        B x h x w x C: the same values regrouped as the reference's "tokens".
    """
    b, h, w, c = tokens.shape
    return tokens.reshape(b, c, h * w).permute(0, 2, 1).reshape(b, h, w, c)


class _ChannelsLast(nn.Module):
    """Apply a B x C x h x w module to B x h x w x C tokens."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _conv_block(dim: int, out_dim: int) -> nn.Module:
    """The reference's convolutional per-block ATL ("3_MidLay_c"), on B x h x w x dim tokens."""
    return _ChannelsLast(
        nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=1),
            LayerNorm2d(dim),
            nn.GELU(),
            nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim),
            LayerNorm2d(dim),
            nn.GELU(),
            nn.Conv2d(dim, out_dim, kernel_size=1),
            LayerNorm2d(out_dim),
            nn.GELU(),
        )
    )


class PromptATL(BlockInjector):
    """The ATL of the released TransLandSeg code: image-conditioned prompts added to the tokens before every block.

    Args:
        embed_dim: ViT token width C (ViT-L: 1024).
        depth: number of ViT blocks that get a prompt (ViT-L: 24).
        dim: bottleneck width (reference: C / 32 = 32 for ViT-L).
        kind: ``'mlp'`` (reference), ``'mlp2'`` or ``'conv'`` per-block module (see the module docstring).
        freq_nums: fraction of the spectrum removed by the high-pass (reference 0.25).
        handcrafted: use the frequency branch (reference: yes).
        embedding: use the embedding branch (reference: yes).
        patch_size: ViT patch size (SAM: 16).
        embedding_reshape: ``'per_token'`` (default: a per-token linear map, as the paper describes) or
            ``'reference'`` (the released code's ``reshape(N, C, H*W)`` of channels-last tokens, which regroups
            values across tokens; see :func:`reference_token_reshape`).

    Shapes:
        :meth:`begin` takes the B x 3 x S x S encoder input and the B x h x w x C tokens (position embedding added)
        and returns the B x h x w x dim base feature; :meth:`before_block` returns B x h x w x C tokens.
    """

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        dim: int = 32,
        kind: Literal['mlp', 'mlp2', 'conv'] = 'mlp',
        freq_nums: float = 0.25,
        handcrafted: bool = True,
        embedding: bool = True,
        patch_size: int = PATCH_SIZE,
        embedding_reshape: EmbeddingReshape = 'per_token',
    ) -> None:
        super().__init__()
        if kind not in ('mlp', 'mlp2', 'conv'):
            raise ConfigError(f"PromptATL kind must be 'mlp', 'mlp2' or 'conv', got {kind!r}")
        if not (handcrafted or embedding):
            raise ConfigError('the ATL needs at least one of the handcrafted (frequency) and embedding branches')
        if not 0.0 <= freq_nums <= 1.0:
            raise ConfigError(f'freq_nums must be in [0, 1], got {freq_nums}')
        if embedding_reshape not in ('per_token', 'reference'):
            raise ConfigError(f"embedding_reshape must be 'per_token' or 'reference', got {embedding_reshape!r}")
        self.embedding_reshape = embedding_reshape
        self.embed_dim = embed_dim
        self.depth = depth
        self.dim = dim
        self.kind = kind
        self.freq_nums = freq_nums
        # Frequency branch: high-passed image -> patch conv 3 -> dim (the reference's ``PatchEmbed2``).
        self.handcrafted_proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size) if handcrafted else None
        # Embedding branch: patch tokens C -> dim.
        self.embedding_proj = nn.Linear(embed_dim, dim) if embedding else None
        blocks: list[nn.Module] = []
        for _ in range(depth):
            if kind == 'mlp':
                blocks.append(nn.Sequential(nn.Linear(dim, dim), nn.GELU()))
            elif kind == 'mlp2':
                blocks.append(nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.GELU()))
            else:
                blocks.append(_conv_block(dim, embed_dim))
        self.blocks = nn.ModuleList(blocks)
        # One up-projection dim -> C shared by all blocks (the conv ATL projects inside each block).
        self.shared_proj = nn.Linear(dim, embed_dim) if kind != 'conv' else None
        self.apply(_init_weights)
        self._position_embedding: Callable[[tuple[int, int]], Tensor] | None = None

    def bind_position_embedding(self, fn: Callable[[tuple[int, int]], Tensor] | None) -> None:
        """Give the ATL the encoder's position embedding (``grid -> 1 x h x w x C``).

        The reference feeds the embedding branch the patch tokens *before* the absolute position embedding is
        added; the encoder hands :meth:`begin` the tokens after it, so a bound ATL subtracts it again. Unbound, the
        tokens are used as given.
        """
        self._position_embedding = fn

    def begin(self, image: Tensor, tokens: Tensor) -> Tensor:
        """The per-token base feature (handcrafted + embedding), B x h x w x dim."""
        base: Tensor | None = None
        if self.embedding_proj is not None:
            patch = tokens
            if self._position_embedding is not None:
                patch = tokens - self._position_embedding(tuple(tokens.shape[1:3])).to(tokens.dtype)
            if self.embedding_reshape == 'reference':
                patch = reference_token_reshape(patch)
            base = self.embedding_proj(patch)
        if self.handcrafted_proj is not None:
            hand = self.handcrafted_proj(highpass_fft(image, self.freq_nums)).permute(0, 2, 3, 1)
            if hand.shape[1:3] != tokens.shape[1:3]:
                raise ConfigError(
                    f'the frequency branch gives a {tuple(hand.shape[1:3])} grid but the ViT a '
                    f'{tuple(tokens.shape[1:3])} one; the encoder input side must be a multiple of {PATCH_SIZE}'
                )
            base = hand if base is None else base + hand
        assert base is not None
        return base

    def prompt(self, index: int, base: Tensor) -> Tensor:
        """The prompt added before block ``index``: B x h x w x C."""
        out = self.blocks[index](base)
        return self.shared_proj(out) if self.shared_proj is not None else out

    def before_block(self, index: int, tokens: Tensor, state: object) -> Tensor:
        """``tokens + prompt_index`` (B x h x w x C)."""
        if index >= self.depth:
            return tokens
        assert isinstance(state, Tensor)
        return tokens + self.prompt(index, state)


class SpaceATL(BlockInjector):
    """The reference's "Space_Adapter" (``image_encoder2.py``): an adapter inside every ViT block.

    ``adapter(a) = 3 x [GELU(LN2d(conv1x1(.)))] (fc2(GELU(fc1(a))))``, the 1x1 conv and LayerNorm2d reused for the
    three steps, applied to the attention output ``a`` before the block's attention residual add
    (``location='after_attention'``, reference) or to the tokens entering the block (``'pre_block'``), returning
    ``a + adapter(a)`` when ``skip`` (reference) or ``adapter(a)``.

    Args:
        embed_dim: ViT token width C.
        depth: number of blocks with an adapter.
        ratio: hidden width of the Linear bottleneck as a fraction of C (reference: 256 / 1024 = 0.25).
        skip: the adapter's own skip connection.
        location: ``'after_attention'`` (reference) or ``'pre_block'``.
        conv_steps: how many times the shared 1x1 conv + LN2d + GELU is applied (reference 3; 0 drops the conv).
        init: ``'trunc_normal'`` (default: the prompt ATLs' scheme) or ``'default'`` (PyTorch's own initialisation,
            as the reference's ``Adapter``, which has none of its own).
        trainable: False freezes the adapters at their initial values, as the reference's freezing rule does (it
            freezes every parameter inside ``image_encoder`` except the prompt generator's).

    Shapes: tokens B x h x w x C in and out.
    """

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        ratio: float = 0.25,
        skip: bool = True,
        location: Literal['after_attention', 'pre_block'] = 'after_attention',
        conv_steps: int = 3,
        init: SpaceInit = 'trunc_normal',
        trainable: bool = True,
    ) -> None:
        super().__init__()
        if location not in ('after_attention', 'pre_block'):
            raise ConfigError(f"location must be 'after_attention' or 'pre_block', got {location!r}")
        if init not in ('trunc_normal', 'default'):
            raise ConfigError(f"space adapter init must be 'trunc_normal' or 'default', got {init!r}")
        hidden = max(1, round(embed_dim * ratio))
        self.embed_dim = embed_dim
        self.depth = depth
        self.skip = skip
        self.location = location
        self.conv_steps = conv_steps
        self.uses_after_attention = location == 'after_attention'
        self.adapters = nn.ModuleList(
            nn.ModuleDict(
                {
                    'fc1': nn.Linear(embed_dim, hidden),
                    'fc2': nn.Linear(hidden, embed_dim),
                    **(
                        {'conv': nn.Conv2d(embed_dim, embed_dim, kernel_size=1), 'norm': LayerNorm2d(embed_dim)}
                        if conv_steps > 0
                        else {}
                    ),
                }
            )
            for _ in range(depth)
        )
        self.act = nn.GELU()
        self.init = init
        self.trainable = trainable
        if init == 'trunc_normal':
            self.apply(_init_weights)
        for p in self.parameters():
            p.requires_grad_(trainable)

    def adapt(self, index: int, x: Tensor) -> Tensor:
        """Apply block ``index``'s adapter (with its skip when enabled) to B x h x w x C tokens."""
        if index >= self.depth:
            return x
        m = self.adapters[index]
        y = m['fc2'](self.act(m['fc1'](x)))
        if self.conv_steps > 0:
            y = y.permute(0, 3, 1, 2)
            for _ in range(self.conv_steps):
                y = self.act(m['norm'](m['conv'](y)))
            y = y.permute(0, 2, 3, 1)
        return x + y if self.skip else y

    def before_block(self, index: int, tokens: Tensor, state: object) -> Tensor:
        """The adapter on the tokens entering the block (``location='pre_block'`` only)."""
        return self.adapt(index, tokens) if self.location == 'pre_block' else tokens

    def after_attention(self, index: int, tokens: Tensor, state: object) -> Tensor:
        """The adapter on the attention output (``location='after_attention'`` only)."""
        return self.adapt(index, tokens) if self.location == 'after_attention' else tokens


def build_atl(
    kind: ATLKind,
    embed_dim: int,
    depth: int,
    dim: int = 32,
    freq_nums: float = 0.25,
    handcrafted: bool = True,
    embedding: bool = True,
    space_skip: bool = True,
    space_location: Literal['after_attention', 'pre_block'] = 'after_attention',
    space_ratio: float = 0.25,
    space_conv_steps: int = 3,
    embedding_reshape: EmbeddingReshape = 'per_token',
    space_init: SpaceInit = 'trunc_normal',
    space_trainable: bool = True,
) -> PromptATL | SpaceATL:
    """Build one of the ATL variants (:data:`ATL_KINDS`) for a ViT of width ``embed_dim`` and ``depth`` blocks.

    The ``dim``/``freq_nums``/``handcrafted``/``embedding``/``embedding_reshape`` arguments apply to the prompt ATLs
    (``'mlp'``, ``'mlp2'``, ``'conv'``), the ``space_*`` ones to ``'space'``.
    """
    if kind == 'space':
        return SpaceATL(
            embed_dim, depth, space_ratio, space_skip, space_location, space_conv_steps, space_init, space_trainable
        )
    if kind in ('mlp', 'mlp2', 'conv'):
        return PromptATL(
            embed_dim, depth, dim, kind, freq_nums, handcrafted, embedding, embedding_reshape=embedding_reshape
        )
    raise ConfigError(f'unknown ATL {kind!r}; choose one of {list(ATL_KINDS)}')
