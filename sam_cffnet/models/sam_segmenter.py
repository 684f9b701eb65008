"""A frozen SAM encoder followed by a trainable decoder: the shape SAM-CFFNet, its decoder ablations and HPCL-Net share.

A decoder takes the encoder's feature list and the encoder-size image and returns logits at any resolution; the
segmenter resizes them to the input tile. The encoder options (``variant``, ``sam_checkpoint``, ``input_size``,
``sam_normalize``, bands, speed switches) are :class:`~sam_cffnet.models.encoders.sam.SAMEncoder`'s own arguments,
forwarded unchanged as ``**encoder_args``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from .base import LandslideModel
from .encoders.sam import SAMEncoder

__all__ = ['SAMSegmenter']


class SAMSegmenter(LandslideModel):
    """A frozen :class:`SAMEncoder` followed by a trainable decoder.

    Subclasses build ``self.decoder`` after calling this constructor (it usually needs the encoder's width,
    ``self.encoder.embed_dim``): a module called as ``decoder(features, image)`` with the encoder's feature maps
    (each B x C x S/16 x S/16) and the 3-band encoder-size image (B x 3 x S x S), returning B x 1 x h x w logits.

    Args:
        **encoder_args: the options of the frozen :class:`SAMEncoder`.

    Shapes: B x in_channels x H x W -> B x 1 x H x W logits.
    """

    #: batch keys passed to ``forward`` after ``input_keys`` when the batch has them (cached encoder features).
    optional_input_keys: tuple[str, ...] = ('features',)
    forwards_options_to = SAMEncoder

    decoder: nn.Module

    def __init__(self, **encoder_args: Any) -> None:
        super().__init__()
        self.encoder = SAMEncoder(out_indices=None, injector=None, **encoder_args)
        self._complete_config(self.encoder.options)

    @property
    def in_channels(self) -> int:
        """Bands the model takes."""
        return self.encoder.in_channels

    def forward(self, image: Tensor, features: Sequence[Tensor] | None = None) -> Tensor:
        """Landslide logits.

        Args:
            image: B x in_channels x H x W floats (reference convention: 3 bands in [0, 1]).
            features: precomputed encoder features (e.g. from :mod:`sam_cffnet.features`), each B x C x S/16 x S/16;
                the frozen ViT is then skipped (only band adaptation and resize of ``image`` run, for the decoder).

        Returns:
            B x 1 x H x W logits (no sigmoid).
        """
        out = self.encoder(image) if features is None else self.encoder.output_from_features(image, features)
        logits = self.decoder(out.features, out.image)
        if logits.shape[-2:] != image.shape[-2:]:
            logits = F.interpolate(logits, size=image.shape[-2:], mode='bilinear', align_corners=False)
        return logits

    def external_state_keys(self) -> list[str]:
        """The frozen ViT's weights when they come from a SAM checkpoint file (random ones must be saved)."""
        if self.encoder.checkpoint_path is None:
            return []
        return [f'encoder.vit.{k}' for k in self.encoder.vit.state_dict()]
