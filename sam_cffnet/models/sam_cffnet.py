"""SAM-CFFNet: a frozen SAM image encoder with the trainable CFFD decoder (Xi et al., Remote Sensing 2024).

:class:`SAMSegmenter` is the frozen-SAM-encoder + swappable-decoder model; SAM-CFFNet and the paper's decoder
ablations are all instances of it with a different decoder. A decoder takes the encoder's feature list and the
encoder-size image and returns logits at any resolution; the segmenter resizes them to the input tile.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from .base import LandslideModel
from .decoders.cffd import CFFD
from .encoders.sam import SAMEncoder
from .registry import register_model

__all__ = ['SAMCFFNet', 'SAMSegmenter', 'build_sam_encoder']


class SAMSegmenter(LandslideModel):
    """A frozen :class:`SAMEncoder` followed by a trainable decoder.

    Args:
        encoder: the SAM encoder (frozen).
        decoder: a module called as ``decoder(features, image)`` with the encoder's feature maps
            (each B x C x S/16 x S/16) and the 3-band encoder-size image (B x 3 x S x S), returning B x 1 x h x w
            logits.

    Shapes: B x in_channels x H x W -> B x 1 x H x W logits.
    """

    def __init__(self, encoder: SAMEncoder, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @property
    def in_channels(self) -> int:
        """Bands the model takes."""
        return self.encoder.in_channels

    #: batch keys passed to ``forward`` after ``input_keys`` when the batch has them (cached encoder features).
    optional_input_keys: tuple[str, ...] = ('features',)

    def forward(self, image: Tensor, features: Sequence[Tensor] | None = None) -> Tensor:
        """Landslide logits.

        Args:
            image: B x in_channels x H x W floats (reference convention: 3 bands in [0, 1]).
            features: precomputed encoder features (e.g. from :mod:`sam_cffnet.features`), each B x C x S/16 x S/16;
                the frozen ViT is then skipped (only band adaptation and resize of ``image`` run, for the decoder).

        Returns:
            B x 1 x H x W logits (no sigmoid).
        """
        if features is not None:
            from ..features.cache import encoder_output_from_features

            out = encoder_output_from_features(self.encoder, image, features)
        else:
            out = self.encoder(image)
        logits = self.decoder(out.features, out.image)
        if logits.shape[-2:] != image.shape[-2:]:
            logits = F.interpolate(logits, size=image.shape[-2:], mode='bilinear', align_corners=False)
        return logits

    def training_outputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits (from cached ``batch['features']`` when present) and no auxiliary loss."""
        return self(batch['image'], batch.get('features')), {}

    def external_state_keys(self) -> list[str]:
        """The frozen ViT's weights when they come from a SAM checkpoint file (random ones must be saved)."""
        if self.encoder.checkpoint_path is None:
            return []
        return [f'encoder.vit.{k}' for k in self.encoder.vit.state_dict()]


def build_sam_encoder(
    encoder: str = 'vit_l',
    sam_checkpoint: str | os.PathLike[str] | None = None,
    encoder_input_size: int | None = 1024,
    sam_normalize: bool = False,
    in_channels: int = 3,
    band_adapter: Literal['select', 'project'] = 'select',
    band_indices: Sequence[int] | None = None,
    attention: Literal['reference', 'sdpa'] = 'reference',
    autocast: Literal['none', 'bf16'] = 'none',
    channels_last: bool = False,
) -> SAMEncoder:
    """The frozen SAM encoder from the model-level arguments shared by SAM-CFFNet and its decoder ablations.

    The arguments are those of :class:`SAMCFFNet` (``encoder`` -> ``SAMEncoder.variant``, ``sam_checkpoint`` ->
    ``checkpoint``, ``encoder_input_size`` -> ``input_size``; the others keep their names).
    """
    return SAMEncoder(
        variant=encoder,
        checkpoint=sam_checkpoint,
        input_size=encoder_input_size,
        sam_normalize=sam_normalize,
        in_channels=in_channels,
        band_adapter=band_adapter,
        band_indices=band_indices,
        attention=attention,
        autocast=autocast,
        channels_last=channels_last,
    )


@register_model('sam_cffnet')
class SAMCFFNet(SAMSegmenter):
    """SAM-CFFNet with reference defaults (ViT-L, input resized to 1024, no SAM normalization, shared CFFD).

    Args:
        encoder: SAM size: ``'vit_b'``, ``'vit_l'`` (reference), ``'vit_h'`` or ``'vit_tiny'`` (tests).
        sam_checkpoint: official SAM checkpoint (``sam_vit_l_0b3195.pth``) or any checkpoint holding the encoder;
            ``None`` leaves the encoder random (only sensible for tests and the demo).
        encoder_input_size: side of the encoder input (reference 1024); ``None`` = the tile's own size, with the
            position embedding interpolated.
        sam_normalize: apply SAM's pixel mean/std to the [0, 1] input (reference: off).
        in_channels: input bands.
        band_adapter: ``'select'`` three bands or ``'project'`` with a trainable 1x1 conv (see ``BandAdapter``).
        band_indices: the bands used as R, G, B.
        shared: CFFD weight sharing (reference: True, 4,258,723 trainable parameters with ViT-L; False: 15,068,167).
        decoder_channels: CFFD width (reference 256).
        attention: encoder attention, ``'reference'`` or ``'sdpa'`` (same result, less memory; see
            ``encoders/attention.py``).
        autocast: ``'none'`` (fp32, reference) or ``'bf16'`` encoder autocast.
        channels_last: channels-last patch embedding of the encoder.
        reference_checkpoint: one of the authors' released ``{BJL,L4S,GVLM}_best.pth.tar``: the whole model
            (encoder and CFFD) starts from it, so the released models can be evaluated, used for prediction or
            fine-tuned through the CLI (``--model.init_args.model_args.reference_checkpoint FILE``). The file also
            serves as the frozen encoder's checkpoint (training checkpoints leave the encoder out and rebuild it
            from this file), so ``sam_checkpoint`` must then be left unset.

    Example:
        >>> model = SAMCFFNet.from_reference_checkpoint('checkpoints/BJL_best.pth.tar')  # doctest: +SKIP
        >>> logits = model(tile)  # B x 3 x 256 x 256 in [0, 1] -> B x 1 x 256 x 256
    """

    def __init__(
        self,
        encoder: str = 'vit_l',
        sam_checkpoint: str | os.PathLike[str] | None = None,
        encoder_input_size: int | None = 1024,
        sam_normalize: bool = False,
        in_channels: int = 3,
        band_adapter: Literal['select', 'project'] = 'select',
        band_indices: Sequence[int] | None = None,
        shared: bool = True,
        decoder_channels: int = 256,
        attention: Literal['reference', 'sdpa'] = 'reference',
        autocast: Literal['none', 'bf16'] = 'none',
        channels_last: bool = False,
        reference_checkpoint: str | os.PathLike[str] | None = None,
    ) -> None:
        if reference_checkpoint is not None and sam_checkpoint is not None:
            raise ValueError(
                f'give either sam_checkpoint ({sam_checkpoint}) or reference_checkpoint ({reference_checkpoint}): '
                f"the authors' checkpoint holds the SAM encoder too; unset sam_checkpoint "
                f'(--model.init_args.model_args.sam_checkpoint null)'
            )
        enc = build_sam_encoder(
            encoder, sam_checkpoint, encoder_input_size, sam_normalize, in_channels, band_adapter, band_indices,
            attention, autocast, channels_last,
        )  # fmt: skip
        super().__init__(enc, CFFD(enc.embed_dim, decoder_channels, 64, shared))
        if reference_checkpoint is not None:
            from .reference import load_reference_checkpoint

            load_reference_checkpoint(self, reference_checkpoint)

    @classmethod
    def from_reference_checkpoint(cls, path: str | os.PathLike[str], **kwargs: Any) -> SAMCFFNet:
        """Load one of the authors' released checkpoints (``{BJL,L4S,GVLM}_best.pth.tar``).

        The file holds ``{'epoch', 'state_dict', 'optimizer'}`` with the whole model (SAM ViT-L encoder and the
        decoder, shared modules repeated under ``.0``-``.3``); it is read with ``weights_only=True``.

        Args:
            path: the ``.pth.tar`` file.
            **kwargs: overrides of the reference configuration (e.g. ``shared=False``).

        Returns:
            The model in eval mode. Its forward takes B x 3 x H x W floats in [0, 1] and returns logits
            B x 1 x H x W (reference: 256 x 256 tiles).
        """
        return cls(**{'encoder': 'vit_l', **kwargs, 'reference_checkpoint': path}).eval()
