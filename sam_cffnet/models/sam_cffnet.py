"""SAM-CFFNet (Xi et al., Remote Sensing 2024, 16(13), 2334): the frozen SAM encoder with the CFFD decoder.

The reference defaults: ViT-L, tiles resized to 1024, no SAM pixel normalization, shared CFFD weights (4,258,723
trainable parameters). The frozen encoder is :class:`~sam_cffnet.models.encoders.sam.SAMEncoder`, whose options every
SAM-based model forwards unchanged (``**encoder_args``).
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from .decoders.cffd import CFFD
from .reference import load_reference_checkpoint
from .registry import register_model
from .sam_segmenter import SAMSegmenter

__all__ = ['SAMCFFNet']


@register_model('sam_cffnet')
class SAMCFFNet(SAMSegmenter):
    """SAM-CFFNet with reference defaults (ViT-L, input resized to 1024, no SAM normalization, shared CFFD).

    Args:
        shared: CFFD weight sharing (reference: True, 4,258,723 trainable parameters with ViT-L; False: 15,068,167).
        decoder_channels: CFFD width (reference 256).
        reference_checkpoint: one of the authors' released ``{BJL,L4S,GVLM}_best.pth.tar``: the whole model
            (encoder and CFFD) starts from it, so the released models can be evaluated, used for prediction or
            fine-tuned through the CLI (``--model.model.reference_checkpoint FILE``). The file also serves as the
            frozen encoder's checkpoint (training checkpoints leave the encoder out and rebuild it from this file),
            so ``sam_checkpoint`` must then be left unset.
        **encoder_args: the frozen SAM encoder's options (:class:`~sam_cffnet.models.encoders.sam.SAMEncoder`):
            ``variant`` (``'vit_l'``), ``sam_checkpoint``, ``input_size`` (1024), ``sam_normalize`` (False),
            ``in_channels``, ``band_adapter``, ``band_indices``, ``attention``, ``autocast``, ``channels_last``.

    Examples:
        >>> model = SAMCFFNet.from_reference_checkpoint('checkpoints/BJL_best.pth.tar')  # doctest: +SKIP
        >>> logits = model(tile)  # B x 3 x 256 x 256 in [0, 1] -> B x 1 x 256 x 256
    """

    def __init__(
        self,
        shared: bool = True,
        decoder_channels: int = 256,
        reference_checkpoint: str | None = None,
        **encoder_args: Any,
    ) -> None:
        sam_checkpoint = encoder_args.get('sam_checkpoint')
        if reference_checkpoint is not None and sam_checkpoint is not None:
            raise ConfigError(
                f'give either sam_checkpoint ({sam_checkpoint}) or reference_checkpoint ({reference_checkpoint}): '
                f"the authors' checkpoint holds the SAM encoder too; unset sam_checkpoint "
                f'(--model.model.sam_checkpoint null)'
            )
        super().__init__(**encoder_args)
        self.decoder = CFFD(self.encoder.embed_dim, decoder_channels, 64, shared)
        if reference_checkpoint is not None:
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
        return cls(**{'variant': 'vit_l', **kwargs, 'reference_checkpoint': os.fspath(path)}).eval()
