"""The frozen SAM image encoder (ViT-B/L/H, plus a tiny variant for tests) with multi-level feature taps.

The encoder is built with :class:`segment_anything.modeling.ImageEncoderViT` so that the official SAM checkpoints
(``sam_vit_{b,l,h}_*.pth``) load without conversion. What this module adds on top of segment-anything:

* a registry of size variants (:data:`SAM_VARIANTS`), with the feature taps after the global-attention blocks
  (ViT-L: blocks 5, 11, 17, 23);
* input handling: band adaptation for inputs that are not 3-band RGB (:class:`BandAdapter`), a resize to the encoder
  input size (reference: bilinear to 1024, ``align_corners=False``) or the native tile size with the absolute
  position embedding interpolated, and optional SAM pixel normalization (reference: off, [0, 1] input);
* freezing: no gradients, always in eval mode, never given to an optimizer;
* no wasted work: SAM's neck is never built (the reference computes it and throws it away) and the blocks after the
  last tap are dropped;
* an injection point for trainable adapters (:class:`BlockInjector`), used by TransLandSeg, without copying the
  encoder.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT
from torch import Tensor, nn

from ...checkpoint import WEIGHT_FILE_ARGS, load_checkpoint_file
from ...errors import CheckpointError, ConfigError, DataError
from ..base import RecordsConfig
from .attention import configure_encoder_speed

__all__ = [
    'SAM_PIXEL_MEAN',
    'SAM_PIXEL_STD',
    'SAM_VARIANTS',
    'BandAdapter',
    'BlockInjector',
    'EncoderOutput',
    'SAMEncoder',
    'SAMVariant',
    'SAMVariantName',
    'sam_checkpoint_filter',
    'sam_variant',
]

#: SAM's pixel statistics on the 0-255 scale (segment_anything.modeling.Sam).
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SAMVariant:
    """Architecture of one SAM image-encoder size.

    Attributes:
        embed_dim: token width C.
        depth: number of transformer blocks.
        num_heads: attention heads.
        global_attn_indexes: blocks with global attention; the features are tapped after them.
        window_size: window of the windowed-attention blocks.
        img_size: the input size the position embedding was trained for.
        checkpoint_name: file name of the official checkpoint (for messages).
    """

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    img_size: int = 1024
    checkpoint_name: str = ''


#: Registry of encoder sizes. ``vit_tiny`` has random weights only and exists for tests and the demo.
SAM_VARIANTS: dict[str, SAMVariant] = {
    'vit_b': SAMVariant(768, 12, 12, (2, 5, 8, 11), checkpoint_name='sam_vit_b_01ec64.pth'),
    'vit_l': SAMVariant(1024, 24, 16, (5, 11, 17, 23), checkpoint_name='sam_vit_l_0b3195.pth'),
    'vit_h': SAMVariant(1280, 32, 16, (7, 15, 23, 31), checkpoint_name='sam_vit_h_4b8939.pth'),
    'vit_tiny': SAMVariant(64, 8, 2, (1, 3, 5, 7), window_size=7, img_size=256),
}
#: The names of :data:`SAM_VARIANTS` as a type (what configs, ``--help`` and the parsers accept).
SAMVariantName = Literal[tuple(SAM_VARIANTS)]  # type: ignore[valid-type]


def sam_variant(name: str) -> SAMVariant:
    """The architecture of the SAM size ``name``.

    Raises:
        ConfigError: ``name`` is not in :data:`SAM_VARIANTS`.
    """
    if name not in SAM_VARIANTS:
        raise ConfigError(f'unknown SAM encoder {name!r}; choose one of {sorted(SAM_VARIANTS)}')
    return SAM_VARIANTS[name]


PATCH_SIZE = 16


@dataclass
class EncoderOutput:
    """What the encoder hands to a decoder.

    Attributes:
        features: the tapped block outputs, each B x C x h x w with h = w = S / 16.
        image: the 3-band image at encoder input size S, B x 3 x S x S, *before* SAM pixel normalization (what the
            reference's shallow branch sees).
    """

    features: list[Tensor]
    image: Tensor


class BlockInjector(nn.Module):
    """Base class for trainable modules that act on the token stream of the frozen ViT (e.g. TransLandSeg's ATL).

    The encoder calls :meth:`begin` once after the patch embedding and :meth:`before_block` before every block.
    The default implementation does nothing. A subclass's parameters are the only trainable ones in the encoder.
    """

    def begin(self, image: Tensor, tokens: Tensor) -> object:
        """Prepare per-image state.

        Args:
            image: B x 3 x S x S encoder input (after normalization).
            tokens: B x h x w x C patch tokens (position embedding added).

        Returns:
            Any state passed back to :meth:`before_block`.
        """
        return None

    def before_block(self, index: int, tokens: Tensor, state: object) -> Tensor:
        """Return the tokens (B x h x w x C) that enter block ``index``."""
        return tokens

    def after_attention(self, index: int, tokens: Tensor, state: object) -> Tensor:
        """Return the attention output of block ``index`` (B x h x w x C) before its residual add."""
        return tokens

    #: Set to True by subclasses that override :meth:`after_attention` (the encoder then runs blocks step by step).
    uses_after_attention: bool = False


class BandAdapter(nn.Module):
    """Brings a C-band input to the 3 bands SAM was trained on.

    Modes:
        * ``'select'``: pick three bands by index (default ``band_indices=(0, 1, 2)``); no parameters.
        * ``'project'``: a trainable 1x1 convolution C -> 3, initialised to select ``band_indices`` when given (so
          training starts from the RGB solution), otherwise to the band mean.

    Args:
        in_channels: number of input bands C.
        mode: ``'select'`` or ``'project'``.
        band_indices: the three bands to use as R, G, B (0-based).
    """

    def __init__(
        self,
        in_channels: int = 3,
        mode: Literal['select', 'project'] = 'select',
        band_indices: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if mode not in ('select', 'project'):
            raise ConfigError(f"band_adapter must be 'select' or 'project', got {mode!r}")
        if band_indices is not None:
            band_indices = [int(i) for i in band_indices]
            if len(band_indices) != 3 or not all(0 <= i < in_channels for i in band_indices):
                raise ConfigError(
                    f'band_indices must be 3 indices in [0, {in_channels - 1}] (R, G, B) for a {in_channels}-band '
                    f'input, got {band_indices}'
                )
        if mode == 'select' and band_indices is None:
            if in_channels < 3:
                raise ConfigError(f"a {in_channels}-band input needs band_adapter='project' (SAM takes 3 bands)")
            band_indices = [0, 1, 2]
        self.in_channels = in_channels
        self.mode = mode
        self.band_indices = band_indices
        self.proj: nn.Conv2d | None = None
        if mode == 'project':
            self.proj = nn.Conv2d(in_channels, 3, kernel_size=1)
            with torch.no_grad():
                self.proj.bias.zero_()
                self.proj.weight.zero_()
                if band_indices is not None:
                    for out, band in enumerate(band_indices):
                        self.proj.weight[out, band] = 1.0
                else:
                    self.proj.weight.fill_(1.0 / in_channels)

    def forward(self, x: Tensor) -> Tensor:
        """Map B x C x H x W to B x 3 x H x W."""
        if self.proj is not None:
            return self.proj(x)
        if self.band_indices == [0, 1, 2] and x.shape[1] == 3:
            return x
        return x[:, self.band_indices]


def sam_checkpoint_filter(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Extract the image-encoder weights from any of the checkpoint formats users hold.

    Accepted: an official SAM checkpoint (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``), a
    SAM-CFFNet reference checkpoint's ``state_dict`` (``image_encoder.*``, ``decoder.*``), one of our own model
    state dicts (``encoder.vit.*``), or a bare encoder state dict (``patch_embed.*``, ``blocks.*``).

    Returns:
        Keys relative to :class:`ImageEncoderViT` (``patch_embed.proj.weight``, ``blocks.0.norm1.weight``, ...),
        without SAM's neck, which is never used.
    """
    for prefix in ('image_encoder.', 'encoder.vit.', 'model.encoder.vit.', ''):
        sub = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if 'patch_embed.proj.weight' in sub:
            return {k: v for k, v in sub.items() if not k.startswith('neck.')}
    return {}


def describe_encoder_weights(weights: dict[str, Tensor]) -> str:
    """A human description of an encoder state dict (size and depth), for error messages."""
    embed = weights['patch_embed.proj.weight'].shape[0]
    depth = len({k.split('.')[1] for k in weights if k.startswith('blocks.')})
    names = [n for n, v in SAM_VARIANTS.items() if v.embed_dim == embed and v.depth == depth]
    name = names[0] if names else 'unknown SAM size'
    return f'{name} (embed_dim {embed}, {depth} blocks)'


class SAMEncoder(RecordsConfig, nn.Module):
    """Frozen SAM image encoder returning the feature maps after the global-attention blocks.

    Its constructor arguments are the **encoder options of every SAM-based model** of the package: SAM-CFFNet, the
    decoder ablations, TransLandSeg and HPCL-Net forward their ``**encoder_args`` here unchanged (as timm models
    forward ``**kwargs`` to their builder), so an option added here reaches every model, its config and
    ``--help``/``--print_config``.

    Args:
        variant: SAM size, a name of :data:`SAM_VARIANTS`.
        sam_checkpoint: the weights: an official SAM checkpoint (``sam_vit_l_0b3195.pth``), a SAM-CFFNet reference
            checkpoint or one of ours; ``None`` keeps random weights (tests and the demo only).
        input_size: side S of the square encoder input; the image is resized bilinearly to S x S
            (reference: 1024). ``None`` keeps the input's own size (which must be a multiple of 16); the
            absolute position embedding is then interpolated to the token grid.
        sam_normalize: apply SAM's pixel mean/std to a [0, 1] input (SAM-CFFNet reference: off).
        in_channels: bands of the input image (linked from the datamodule by the CLI).
        band_adapter: ``'select'`` or ``'project'``, see :class:`BandAdapter`.
        band_indices: the 3 bands used as RGB.
        attention: ``'reference'`` (segment_anything's attention) or ``'sdpa'`` (same result, memory-efficient);
            see :mod:`.attention`.
        autocast: ``'none'`` (fp32) or ``'bf16'`` (bf16 autocast of the ViT; float32 features out).
        channels_last: channels-last patch embedding.
        out_indices: blocks whose outputs are returned (default: the global-attention blocks; negative indices
            count from the last block). Set by the model, not an option.
        injector: optional trainable :class:`BlockInjector` acting on the tokens (e.g. TransLandSeg's ATL); set by
            the model, not an option.

    Shapes:
        input B x in_channels x H x W, floats (reference: [0, 1]); output :class:`EncoderOutput` with
        ``len(out_indices)`` maps of B x C x S/16 x S/16.

    Its :attr:`options` (the constructor arguments recorded at construction, without ``out_indices`` and
    ``injector``) are what configs and feature-cache keys hold: an argument added here is in them with no other edit.
    """

    #: constructor arguments set by the models themselves, not user options
    internal_arguments = ('out_indices', 'injector')

    def __init__(
        self,
        variant: SAMVariantName = 'vit_l',
        sam_checkpoint: str | None = None,
        input_size: int | None = 1024,
        sam_normalize: bool = False,
        in_channels: int = 3,
        band_adapter: Literal['select', 'project'] = 'select',
        band_indices: list[int] | None = None,
        attention: Literal['reference', 'sdpa'] = 'reference',
        autocast: Literal['none', 'bf16'] = 'none',
        channels_last: bool = False,
        out_indices: Sequence[int] | None = None,
        injector: BlockInjector | None = None,
    ) -> None:
        super().__init__()
        spec = sam_variant(variant)
        if input_size is not None and (input_size <= 0 or input_size % PATCH_SIZE):
            raise ConfigError(f'input_size must be a positive multiple of {PATCH_SIZE} (or None), got {input_size}')
        self.variant = variant
        self.spec = spec
        self.input_size = input_size
        self.sam_normalize = sam_normalize
        self.in_channels = in_channels
        taps = tuple(out_indices) if out_indices is not None else spec.global_attn_indexes
        self.out_indices = tuple(i + spec.depth if i < 0 else i for i in taps)
        if not self.out_indices or max(self.out_indices) >= spec.depth or min(self.out_indices) < 0:
            raise ConfigError(f'out_indices must be block indices in [0, {spec.depth - 1}], got {taps}')
        self.embed_dim = spec.embed_dim
        self.band_adapter = BandAdapter(in_channels, band_adapter, band_indices)

        vit = ImageEncoderViT(
            img_size=spec.img_size,
            patch_size=PATCH_SIZE,
            in_chans=3,
            embed_dim=spec.embed_dim,
            depth=spec.depth,
            num_heads=spec.num_heads,
            mlp_ratio=4.0,
            out_chans=256,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_abs_pos=True,
            use_rel_pos=True,
            rel_pos_zero_init=True,
            window_size=spec.window_size,
            global_attn_indexes=spec.global_attn_indexes,
        )
        # Never run what is thrown away: SAM's neck and the blocks after the last tap.
        del vit.neck
        del vit.blocks[max(self.out_indices) + 1 :]
        self.vit = vit
        self.register_buffer('pixel_mean', torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1) / 255.0, persistent=False)
        self.register_buffer('pixel_std', torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1) / 255.0, persistent=False)
        self.checkpoint_path = os.fspath(sam_checkpoint) if sam_checkpoint is not None else None
        if sam_checkpoint is not None:
            self.load_weights(sam_checkpoint)
        for p in self.vit.parameters():
            p.requires_grad_(False)
        self.vit.eval()
        self.injector = injector
        configure_encoder_speed(self, attention, autocast, channels_last)

    def set_injector(self, injector: BlockInjector | None) -> None:
        """Attach a trainable :class:`BlockInjector` (e.g. TransLandSeg's ATL, built once the size is known)."""
        self.injector = injector

    # ------------------------------------------------------------------ weights
    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load the encoder weights from ``path`` (any format accepted by :func:`sam_checkpoint_filter`).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file is not a checkpoint, holds no SAM image encoder, or holds another SAM size.
        """
        raw = load_checkpoint_file(path, expected=WEIGHT_FILE_ARGS['sam_checkpoint'])
        state = raw.get('state_dict', raw) if isinstance(raw, dict) else raw
        weights = sam_checkpoint_filter(state) if isinstance(state, dict) else {}
        if not weights:
            raise CheckpointError(
                f'{path}: no SAM image encoder found (expected keys like image_encoder.patch_embed.proj.weight, as in '
                f'the official {self.spec.checkpoint_name or "sam_vit_*.pth"} files)'
            )
        expected = self.vit.state_dict()
        got_embed = weights['patch_embed.proj.weight'].shape[0]
        got_depth = len({k.split('.')[1] for k in weights if k.startswith('blocks.')})
        if got_embed != self.spec.embed_dim or got_depth < len(self.vit.blocks):
            raise CheckpointError(
                f'{path} holds a SAM {describe_encoder_weights(weights)} image encoder, but the model is configured '
                f'for {self.variant} (embed_dim {self.spec.embed_dim}, {self.spec.depth} blocks); '
                f'set the encoder to the size of the checkpoint or use the matching checkpoint'
            )
        weights = {k: v for k, v in weights.items() if k in expected}
        missing = sorted(set(expected) - set(weights))
        if missing:
            raise CheckpointError(f'{path}: SAM image encoder weights are incomplete, missing {missing[:5]}')
        for k, v in weights.items():
            if v.shape != expected[k].shape:
                raise CheckpointError(f'{path}: {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}')
        self.vit.load_state_dict(weights, strict=True)
        self.checkpoint_path = os.fspath(path)

    def fingerprint(self) -> str:
        """A short hash of the frozen weights (identifies the SAM checkpoint, e.g. for caches)."""
        h = hashlib.sha1(self.variant.encode())
        for t in (self.vit.patch_embed.proj.weight, self.vit.pos_embed, self.vit.blocks[-1].mlp.lin2.weight):
            h.update(t.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ mode
    def train(self, mode: bool = True) -> SAMEncoder:
        """Set train mode on the trainable parts only: the frozen ViT always stays in eval mode."""
        super().train(mode)
        self.vit.eval()
        return self

    @property
    def has_trainable_parameters(self) -> bool:
        """True when something inside the encoder (band projection, injector) is trained."""
        return any(p.requires_grad for p in self.parameters())

    # ------------------------------------------------------------------ forward
    def check_input(self, x: Tensor) -> None:
        """Raise a clear error for an input the encoder cannot take."""
        if x.ndim != 4:
            raise DataError(f'expected an image batch B x C x H x W, got shape {tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise DataError(
                f'the model takes {self.in_channels}-band images, got {x.shape[1]} bands (shape {tuple(x.shape)}); '
                f'set in_channels (and band_indices) to match the data'
            )
        if self.input_size is None and (x.shape[-2] % PATCH_SIZE or x.shape[-1] % PATCH_SIZE):
            raise DataError(
                f'with input_size=None the image side must be a multiple of {PATCH_SIZE}, got {tuple(x.shape[-2:])}; '
                f'use tiles of a multiple of {PATCH_SIZE} px or set input_size (e.g. 1024)'
            )
        if min(x.shape[-2:]) < PATCH_SIZE and self.input_size is None:
            raise DataError(f'image {tuple(x.shape[-2:])} is smaller than one {PATCH_SIZE} px patch')

    def prepare(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Band adaptation and resize.

        Returns:
            ``(image, encoder_input)``: the 3-band image at encoder size (B x 3 x S x S) and the same after SAM
            normalization when enabled.
        """
        self.check_input(x)
        x = self.band_adapter(x)
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode='bilinear', align_corners=False)
        enc = (x - self.pixel_mean) / self.pixel_std if self.sam_normalize else x
        return x, enc

    def position_embedding(self, grid: tuple[int, int]) -> Tensor:
        """The absolute position embedding (1 x h x w x C), bicubically interpolated when the grid differs."""
        pos = self.vit.pos_embed
        if tuple(pos.shape[1:3]) == grid:
            return pos
        pos = F.interpolate(pos.permute(0, 3, 1, 2), size=grid, mode='bicubic', align_corners=False)
        return pos.permute(0, 2, 3, 1)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Run the ViT on a prepared 3-band input.

        Args:
            x: B x 3 x S x S (normalized as the weights expect).

        Returns:
            The outputs of ``out_indices`` blocks, each B x C x S/16 x S/16.
        """
        tokens = self.vit.patch_embed(x)
        tokens = tokens + self.position_embedding(tuple(tokens.shape[1:3]))
        injector = self.injector
        state = injector.begin(x, tokens) if injector is not None else None
        feats: list[Tensor] = []
        taps = set(self.out_indices)
        for i, blk in enumerate(self.vit.blocks):
            if injector is not None:
                tokens = injector.before_block(i, tokens, state)
                tokens = _run_block(blk, tokens, i, injector, state) if injector.uses_after_attention else blk(tokens)
            else:
                tokens = blk(tokens)
            if i in taps:
                feats.append(tokens.permute(0, 3, 1, 2))
        return feats

    def forward(self, x: Tensor) -> EncoderOutput:
        """Encode an image batch.

        Args:
            x: B x in_channels x H x W floats.

        Returns:
            :class:`EncoderOutput` with the tapped feature maps (B x C x S/16 x S/16 each) and the resized image.
        """
        image, enc = self.prepare(x)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._vit_needs_grad()):
            feats = self.forward_features(enc)
        return EncoderOutput(features=feats, image=image)

    def output_from_features(self, x: Tensor, features: Sequence[Tensor]) -> EncoderOutput:
        """What ``self(x)`` returns, with the ViT replaced by precomputed features (e.g. a feature cache).

        Only the cheap input preparation runs (band selection, resize to the encoder size), for the decoder's
        shallow branch.

        Args:
            x: B x in_channels x H x W, the tile as the datamodule delivers it.
            features: one B x C x h x w tensor per tapped block (any float dtype; cast to the image's dtype).

        Returns:
            :class:`EncoderOutput`.

        Raises:
            DataError: trainable encoder parts, or features of the wrong number/shape.
        """
        if self.has_trainable_parameters:
            raise DataError('cached features cannot be used with a trainable band projection or block injector')
        prepared, _ = self.prepare(x)
        expected = (x.shape[0], self.embed_dim, *self.feature_grid(x.shape[-2], x.shape[-1]))
        if len(features) != len(self.out_indices):
            raise DataError(f'got {len(features)} feature levels, the encoder taps {len(self.out_indices)} blocks')
        for i, f in enumerate(features):
            if tuple(f.shape) != expected:
                raise DataError(
                    f'cached feature level {i} has shape {tuple(f.shape)}, the encoder produces {expected}: the cache '
                    f'was made for another encoder or input size'
                )
        return EncoderOutput(features=[f.to(prepared.dtype) for f in features], image=prepared)

    def _vit_needs_grad(self) -> bool:
        if self.injector is not None and any(p.requires_grad for p in self.injector.parameters()):
            return True
        return self.band_adapter.proj is not None and self.band_adapter.proj.weight.requires_grad

    def feature_grid(self, height: int, width: int) -> tuple[int, int]:
        """Token grid (h, w) for an input of height x width."""
        if self.input_size is not None:
            return self.input_size // PATCH_SIZE, self.input_size // PATCH_SIZE
        return math.ceil(height / PATCH_SIZE), math.ceil(width / PATCH_SIZE)


def _run_block(blk: nn.Module, x: Tensor, index: int, injector: BlockInjector, state: object) -> Tensor:
    """segment_anything ``Block.forward`` with the injector's hook between attention and the residual add."""
    from segment_anything.modeling.image_encoder import window_partition, window_unpartition

    shortcut = x
    x = blk.norm1(x)
    if blk.window_size > 0:
        h, w = x.shape[1], x.shape[2]
        x, pad_hw = window_partition(x, blk.window_size)
    x = blk.attn(x)
    if blk.window_size > 0:
        x = window_unpartition(x, blk.window_size, pad_hw, (h, w))
    x = injector.after_attention(index, x, state)
    x = shortcut + x
    return x + blk.mlp(blk.norm2(x))
