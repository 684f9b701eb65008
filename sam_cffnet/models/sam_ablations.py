"""The decoder ablations of SAM-CFFNet (Models I-IV): the same frozen SAM encoder and feature neck, another head.

The paper ablates its CFFD decoder against four decoders on the same frozen SAM encoder. The authors did not publish
them; these are built as :class:`SAMSegmenter` instances that share everything with SAM-CFFNet up to the fused
features, so that the comparison isolates the head:

==================  ==========  ===========================================================================
registered name     paper       head (on the fused 256-channel map at 1/16 of the encoder input)
==================  ==========  ===========================================================================
``sam_mask_decoder``  Model I   SAM's mask decoder without prompts (:class:`PromptFreeMaskDecoder`): learned
                                no-mask embedding, two-way transformer, x4 upscaling; SAM's pretrained decoder
                                weights are loaded from the SAM checkpoint by default
``sam_psp``           Model II  PSP head: pyramid pooling (bins 1/2/3/6) + 3x3 conv (:class:`PSPHead`)
``sam_aspp``          Model III ASPP head: DeepLabv3 ASPP (rates 6/12/18) + 3x3 conv (:class:`ASPPHead`)
``sam_lawin``         Model IV  LawinASPP head: large-window attention pyramid (:class:`LawinHead`)
==================  ==========  ===========================================================================

**Features each head consumes** (``features`` argument, the same for all four):

* ``'cffm'`` (default): exactly SAM-CFFNet's feature path. The four taps (ViT-L blocks 5/11/17/23, each
  B x 1024 x 64 x 64 for a 1024 px encoder input) go through SAM-CFFNet's CFFM (one shared FAM, three FCFS stages
  with one shared EPSA block each) and the four fused maps are concatenated and projected by CFFD's 1x1 merge conv
  (1024 -> 256, bias). The head gets that B x 256 x 64 x 64 map. Compared with SAM-CFFNet, the head replaces CFFD's
  bottleneck ASPP, the shallow feature extractor (SFE) and the 1x1 head; the image itself is not used.
* ``'last'``: only the last tap, through one FAM (two residual MLPs + a new SAM-style neck, 1024 -> 256): the
  "no cross-feature fusion" variant.
* ``'sam_neck'``: only the last tap, through SAM's own pretrained neck (loaded from ``sam_checkpoint`` and frozen, as
  in SAM and TransLandSeg): SAM's original image embedding, the natural input of Model I's pretrained decoder.

Model I's decoder returns logits at 4x the feature grid (256 px for a 1024 px encoder input); the other heads
predict at the feature grid (64 x 64) and :class:`SAMSegmenter` resizes every output bilinearly to the tile.
All encoder options are :class:`~sam_cffnet.models.encoders.sam.SAMEncoder`'s, forwarded as ``**encoder_args``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .decoders.aspp_head import ASPPHead
from .decoders.cffd import CFFM, FAM
from .decoders.lawin import LawinHead
from .decoders.psp import PSPHead
from .decoders.sam_mask_decoder import PromptFreeMaskDecoder, build_sam_neck, load_sam_neck
from .registry import register_model
from .sam_segmenter import SAMSegmenter

__all__ = [
    'AblationDecoder',
    'FeatureNeck',
    'SAMASPPNet',
    'SAMLawinNet',
    'SAMMaskDecoderNet',
    'SAMPSPNet',
]

FeatureChoice = Literal['cffm', 'last', 'sam_neck']


class FeatureNeck(nn.Module):
    """Turns the encoder's tapped features into the one map an ablation head consumes (see the module docstring).

    Args:
        embed_dim: encoder width C (ViT-L 1024).
        channels: output width (256, as SAM-CFFNet's fused maps and SAM's embedding).
        features: ``'cffm'``, ``'last'`` or ``'sam_neck'``.
        shared: CFFM weight sharing (SAM-CFFNet's reference: True).
        sam_checkpoint: where SAM's neck is read from (``'sam_neck'`` only; ``None`` leaves it random).

    Shapes: 4 x (B x C x h x w) -> B x channels x h x w.
    """

    def __init__(
        self,
        embed_dim: int,
        channels: int = 256,
        features: FeatureChoice = 'cffm',
        shared: bool = True,
        sam_checkpoint: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self.features = features
        self.frozen = False
        if features == 'cffm':
            self.cffm = CFFM(embed_dim, channels, 4, shared)
            self.merge = nn.Conv2d(4 * channels, channels, 1, bias=True)
        elif features == 'last':
            self.fam = FAM(embed_dim, 256, channels)
        elif features == 'sam_neck':
            self.neck = build_sam_neck(embed_dim, channels)
            if sam_checkpoint is not None:
                load_sam_neck(self.neck, sam_checkpoint)
            self.neck.requires_grad_(False)
            self.frozen = True
        else:
            raise ConfigError(f"features must be 'cffm', 'last' or 'sam_neck', got {features!r}")

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """The map of the chosen ``features``: merged CFFM output, or the last level through a FAM or SAM's neck."""
        if self.features == 'cffm':
            return self.merge(torch.cat(self.cffm(features), dim=1))
        if self.features == 'last':
            return self.fam(features[-1])
        return self.neck(features[-1])


class AblationDecoder(nn.Module):
    """A :class:`FeatureNeck` followed by a head; the decoder interface of :class:`SAMSegmenter`.

    Shapes: features 4 x (B x C x h x w), image (unused) -> the head's logits B x 1 x h' x w'.
    """

    def __init__(self, neck: FeatureNeck, head: nn.Module) -> None:
        super().__init__()
        self.neck = neck
        self.head = head

    def forward(self, features: Sequence[Tensor], image: Tensor | None = None) -> Tensor:
        """The head's logits on the neck's map (``image`` is unused)."""
        return self.head(self.neck(features))


class _SAMAblation(SAMSegmenter):
    """Common part of Models I-IV: SAM encoder + :class:`FeatureNeck` + a head.

    Args:
        head: the head (decoder) module, on the fused ``channels``-wide map.
        features: what the head consumes (module docstring).
        channels: width of the fused map.
        shared: CFFM weight sharing.
        **encoder_args: the frozen SAM encoder's options.
    """

    def __init__(
        self, head: nn.Module, features: FeatureChoice, channels: int, shared: bool, **encoder_args: Any
    ) -> None:
        super().__init__(**encoder_args)
        neck = FeatureNeck(self.encoder.embed_dim, channels, features, shared, self.encoder.checkpoint_path)
        self.decoder = AblationDecoder(neck, head)

    def external_state_keys(self) -> list[str]:
        """The frozen ViT (and SAM's neck with ``features='sam_neck'``) when read from the SAM checkpoint."""
        keys = super().external_state_keys()
        neck = self.decoder.neck
        if neck.frozen and self.encoder.checkpoint_path is not None:
            keys += [f'decoder.neck.neck.{k}' for k in neck.neck.state_dict()]
        return keys


@register_model('sam_mask_decoder')
class SAMMaskDecoderNet(_SAMAblation):
    """Model I: frozen SAM encoder + feature neck + SAM's mask decoder without prompts.

    Args:
        features: what the decoder consumes (``'cffm'``, ``'last'``, ``'sam_neck'``; module docstring).
        shared: CFFM weight sharing.
        load_sam_decoder: initialise the mask decoder, SAM's positional encoding and no-mask embedding from the
            official SAM checkpoint (``sam_checkpoint`` must then be one, with ``mask_decoder.*`` keys); False
            starts them from random weights.
        **encoder_args: the frozen SAM encoder's options, as :class:`~sam_cffnet.models.SAMCFFNet`.

    Shapes: B x in_channels x H x W -> B x 1 x H x W logits (the decoder predicts at S/4, S = encoder input size).
    """

    def __init__(
        self, features: FeatureChoice = 'cffm', shared: bool = True, load_sam_decoder: bool = True, **encoder_args: Any
    ) -> None:
        head = PromptFreeMaskDecoder(256)
        super().__init__(head, features, 256, shared, **encoder_args)
        if load_sam_decoder and self.encoder.checkpoint_path is not None:
            head.load_sam_weights(self.encoder.checkpoint_path)


@register_model('sam_psp')
class SAMPSPNet(_SAMAblation):
    """Model II: frozen SAM encoder + feature neck + PSP head.

    Args:
        features: what the head consumes (module docstring).
        shared: CFFM weight sharing.
        decoder_channels: fused feature width (256).
        head_channels: PSP bottleneck width.
        bins: pyramid pooling bins.
        **encoder_args: the frozen SAM encoder's options, as :class:`~sam_cffnet.models.SAMCFFNet`.

    Shapes: B x in_channels x H x W -> B x 1 x H x W logits (predicted at S/16, upsampled).
    """

    def __init__(
        self,
        features: FeatureChoice = 'cffm',
        shared: bool = True,
        decoder_channels: int = 256,
        head_channels: int = 256,
        bins: Sequence[int] = (1, 2, 3, 6),
        **encoder_args: Any,
    ) -> None:
        head = PSPHead(decoder_channels, head_channels, bins)
        super().__init__(head, features, decoder_channels, shared, **encoder_args)


@register_model('sam_aspp')
class SAMASPPNet(_SAMAblation):
    """Model III: frozen SAM encoder + feature neck + ASPP head.

    Args:
        features: what the head consumes (module docstring).
        shared: CFFM weight sharing.
        decoder_channels: fused feature width (256).
        head_channels: ASPP width.
        rate: dilation multiplier (rates 6/12/18 x rate).
        **encoder_args: the frozen SAM encoder's options, as :class:`~sam_cffnet.models.SAMCFFNet`.

    Shapes: B x in_channels x H x W -> B x 1 x H x W logits (predicted at S/16, upsampled).
    """

    def __init__(
        self,
        features: FeatureChoice = 'cffm',
        shared: bool = True,
        decoder_channels: int = 256,
        head_channels: int = 256,
        rate: int = 1,
        **encoder_args: Any,
    ) -> None:
        head = ASPPHead(decoder_channels, head_channels, rate)
        super().__init__(head, features, decoder_channels, shared, **encoder_args)


@register_model('sam_lawin')
class SAMLawinNet(_SAMAblation):
    """Model IV: frozen SAM encoder + feature neck + LawinASPP head.

    Args:
        features: what the head consumes (module docstring).
        shared: CFFM weight sharing.
        decoder_channels: fused feature width (256).
        head_channels: LawinASPP width (Lawin: 512).
        patch_size: Lawin query patch P (8; maps are zero-padded to a multiple of it).
        ratios: context window ratios (8, 4, 2).
        heads: attention heads per ratio (64, 16, 4).
        **encoder_args: the frozen SAM encoder's options, as :class:`~sam_cffnet.models.SAMCFFNet`.

    Shapes: B x in_channels x H x W -> B x 1 x H x W logits (predicted at S/16, upsampled).
    """

    def __init__(
        self,
        features: FeatureChoice = 'cffm',
        shared: bool = True,
        decoder_channels: int = 256,
        head_channels: int = 512,
        patch_size: int = 8,
        ratios: Sequence[int] = (8, 4, 2),
        heads: Sequence[int] = (64, 16, 4),
        **encoder_args: Any,
    ) -> None:
        head = LawinHead(decoder_channels, head_channels, patch_size, ratios, heads)
        super().__init__(head, features, decoder_channels, shared, **encoder_args)
