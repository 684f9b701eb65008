"""TransLandSeg (Hou et al., arXiv 2403.10127; IEEE JSTARS 18, 2025): ATL adapters in a frozen SAM + SAM's decoder.

Instead of a new decoder on frozen features, small trainable *adaptive transfer learning* (ATL) modules are injected
into the frozen SAM ViT, and SAM's own mask decoder is trained without prompts. Trainable: the ATL and the mask
decoder (with the no-mask embedding); frozen: SAM's patch embedding, position embedding, ViT blocks and neck. With
ViT-L this trains 4,175,140 of 312,453,412 parameters (1.336 %; the paper: "1.3 %"); most of it is the mask decoder
(4,058,596), the ATL itself is 116,544.

Data flow (B x 3 x H x W tile, S = ``encoder_input_size``, h = S / 16)::

    tile --resize to S, ImageNet/SAM normalization--> ViT blocks, each preceded by x <- x + ATL_i(image, tokens)
         --> SAM neck (C -> 256) --> prompt-free SAM mask decoder --> B x 1 x 4h x 4w --bilinear--> B x 1 x H x W

What is faithful to the authors' code and what is not (see also :mod:`sam_cffnet.models.decoders.sam_mask_decoder`
and :mod:`sam_cffnet.models.adapters.atl`):

* Normalization: the reference normalizes its [0, 1] tensors with the ImageNet mean/std
  (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225), which is exactly SAM's pixel mean/std divided by 255, so
  ``sam_normalize=True`` (default) on our [0, 1] RGB tiles is faithful. The ATL's frequency branch sees the
  normalized image, as in the reference.
* Input size: tiles are resized bilinearly to 1024 (reference); the low-resolution 256 x 256 logits are resized
  bilinearly straight to the tile size (the reference goes through 1024 first; the difference is interpolation
  rounding).
* Prompt embeddings: SAM's pretrained positional-encoding matrix and no-mask embedding are loaded from the SAM
  checkpoint. The reference leaves the PE random and learns ``no_mask_embed`` from scratch (it never loads them);
  ``reference_random_prompt_pe=True`` reproduces that.
* Embedding branch: a per-token linear map of the patch tokens (what the paper describes). The released code reshapes
  the channels-last tokens as if they were channels-first (``image_encoder.py:289-292``), which regroups values across
  tokens; ``embedding_reshape='reference'`` reproduces it exactly (see :mod:`sam_cffnet.models.adapters.atl`).
* Space adapter (``atl='space'``, the reference's ``image_encoder2.py``): trained and trunc-normal initialised here;
  the reference keeps PyTorch's default initialisation and, through its freezing rule (every ``image_encoder``
  parameter except the prompt generator's), never trains it: ``space_init='default'`` and ``space_trainable=False``
  reproduce that.
* Batch size: the reference's prompt tensors have batch 1 hard-coded; here everything is properly batched.
* The frozen encoder: a :class:`SAMEncoder` (segment-anything's ViT) with the ATL as its
  :class:`~sam_cffnet.models.encoders.sam.BlockInjector`; SAM's neck is built here (the encoder drops it) and loaded
  from ``image_encoder.neck.*``. Because the ATL changes every block's input, the encoder features are not frozen
  and the feature cache does not apply; gradients flow through the frozen blocks to the ATL, but the frozen weights
  receive none and nothing before the first injection is recorded by autograd. bf16 mixed precision works (the FFT
  runs in float32); so do the encoder's ``attention='sdpa'`` and ``autocast='bf16'`` switches.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor

from .adapters.atl import ATLKind, EmbeddingReshape, PromptATL, SpaceATL, SpaceInit, build_atl
from .base import LandslideModel, count_parameters
from .decoders.sam_mask_decoder import PromptFreeMaskDecoder, build_sam_neck, load_sam_neck
from .encoders.sam import SAMEncoder, sam_variant
from .registry import register_model

__all__ = ['TransLandSeg']

#: the SAM size when none is given: the encoder's own default
_DEFAULT_VARIANT = inspect.signature(SAMEncoder).parameters['variant'].default


@register_model('translandseg')
class TransLandSeg(LandslideModel):
    """TransLandSeg: frozen SAM ViT with trainable ATL adapters, frozen SAM neck, trainable prompt-free mask decoder.

    Args:
        sam_normalize: apply SAM's (= ImageNet's) pixel mean/std to [0, 1] input (reference: yes; the other
            SAM models default to no).
        atl: ATL structure: ``'mlp'`` (reference default), ``'mlp2'``, ``'conv'`` (pre-block prompts) or ``'space'``
            (adapter inside each block); see :mod:`sam_cffnet.models.adapters.atl`.
        atl_dim: bottleneck width of the prompt ATLs (reference: 32 = 1024 / 32).
        freq_nums: fraction of the spectrum removed by the frequency branch's high-pass (reference 0.25).
        handcrafted: use the frequency branch (reference: yes).
        embedding: use the embedding branch (reference: yes).
        space_skip: the space adapter's own skip connection (reference: yes).
        space_location: ``'after_attention'`` (reference) or ``'pre_block'`` for the space adapter.
        space_ratio: hidden width of the space adapter's bottleneck relative to C (reference 0.25).
        space_conv_steps: repetitions of the space adapter's shared 1x1 conv + LN + GELU (reference 3).
        embedding_reshape: ``'per_token'`` (default, the paper) or ``'reference'`` (the released code's reshape of
            channels-last tokens, which mixes tokens; reference protocol only).
        space_init: ``'trunc_normal'`` (default) or ``'default'`` (PyTorch's initialisation, as the reference's space
            adapter).
        space_trainable: False freezes the space adapter at its initial values, as the reference's freezing rule does.
        load_sam_decoder: initialise the mask decoder from the SAM checkpoint (reference: yes).
        reference_random_prompt_pe: keep the decoder's positional encoding random and ``no_mask_embed`` freshly
            initialised, as the reference code does unintentionally (default: load SAM's).
        **encoder_args: the frozen SAM encoder's other options (:class:`~sam_cffnet.models.encoders.sam.SAMEncoder`):
            ``variant`` (``'vit_l'``), ``sam_checkpoint`` (the image encoder, neck and, with ``load_sam_decoder``,
            the mask decoder and prompt embeddings come from it; ``None`` keeps everything random: tests and the
            demo only), ``input_size`` (1024), ``in_channels``, ``band_adapter``, ``band_indices``, ``attention``
            (``'sdpa'`` also saves memory in the backward pass through the global blocks), ``autocast`` (``'bf16'``
            covers the ViT and the ATL inside it; the FFT stays in float32), ``channels_last``.

    Shapes: B x in_channels x H x W floats in [0, 1] -> B x 1 x H x W logits.

    Examples:
        >>> model = TransLandSeg(sam_checkpoint='checkpoints/sam_vit_l_0b3195.pth')  # doctest: +SKIP
        >>> model.parameter_report()['trainable']  # doctest: +SKIP
        4175140
    """

    forwards_options_to = SAMEncoder

    def __init__(
        self,
        atl: ATLKind = 'mlp',
        atl_dim: int = 32,
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
        load_sam_decoder: bool = True,
        reference_random_prompt_pe: bool = False,
        sam_normalize: bool = True,
        **encoder_args: Any,
    ) -> None:
        super().__init__()
        spec = sam_variant(encoder_args.get('variant', _DEFAULT_VARIANT))
        injector = build_atl(
            atl,
            spec.embed_dim,
            spec.depth,
            dim=atl_dim,
            freq_nums=freq_nums,
            handcrafted=handcrafted,
            embedding=embedding,
            space_skip=space_skip,
            space_location=space_location,
            space_ratio=space_ratio,
            space_conv_steps=space_conv_steps,
            embedding_reshape=embedding_reshape,
            space_init=space_init,
            space_trainable=space_trainable,
        )
        self.atl_kind = atl
        # the last block's output only (SAM's image embedding comes from it through the neck)
        self.encoder = SAMEncoder(sam_normalize=sam_normalize, out_indices=(-1,), injector=injector, **encoder_args)
        self._complete_config(self.encoder.options)
        if isinstance(injector, PromptATL):
            injector.bind_position_embedding(self.encoder.position_embedding)
        sam_checkpoint = self.encoder.checkpoint_path
        self.neck = build_sam_neck(spec.embed_dim, 256)
        self.decoder = PromptFreeMaskDecoder(transformer_dim=256)
        self.decoder_loaded_keys: list[str] = []
        if sam_checkpoint is not None:
            load_sam_neck(self.neck, sam_checkpoint)
            if load_sam_decoder:
                self.decoder_loaded_keys = self.decoder.load_sam_weights(
                    sam_checkpoint, reference_random_prompt_pe=reference_random_prompt_pe
                )
        for p in self.neck.parameters():
            p.requires_grad_(False)
        self.neck.eval()

    @property
    def atl(self) -> PromptATL | SpaceATL:
        """The ATL module (it lives in the encoder as its injector)."""
        injector = self.encoder.injector
        assert isinstance(injector, (PromptATL, SpaceATL))
        return injector

    @property
    def in_channels(self) -> int:
        """Bands the model takes."""
        return self.encoder.in_channels

    def train(self, mode: bool = True) -> TransLandSeg:
        """Train mode for the trainable parts; the frozen ViT and neck stay in eval mode."""
        super().train(mode)
        self.neck.eval()
        return self

    def forward(self, image: Tensor) -> Tensor:
        """Landslide logits.

        Args:
            image: B x in_channels x H x W floats (3 bands in [0, 1] by default).

        Returns:
            B x 1 x H x W logits (no sigmoid).
        """
        features = self.encoder(image).features[-1]  # B x C x h x w, the last block's output
        embedding = self.neck(features)  # B x 256 x h x w
        logits = self.decoder(embedding)  # B x 1 x 4h x 4w
        if logits.shape[-2:] != image.shape[-2:]:
            logits = F.interpolate(logits, size=image.shape[-2:], mode='bilinear', align_corners=False)
        return logits

    def external_state_keys(self) -> list[str]:
        """The frozen SAM weights when they come from a SAM checkpoint file (random ones must be saved).

        The ViT and the neck, and the decoder's positional-encoding buffer when it was loaded from SAM (it is never
        trained); the trained ATL, mask decoder and no-mask embedding are not included.
        """
        if self.encoder.checkpoint_path is None:
            return []
        keys = [f'encoder.vit.{k}' for k in self.encoder.vit.state_dict()]
        keys += [f'neck.{k}' for k in self.neck.state_dict()]
        if 'pe_layer.positional_encoding_gaussian_matrix' in self.decoder_loaded_keys:
            keys.append('decoder.pe_layer.positional_encoding_gaussian_matrix')
        return keys

    def parameter_report(self) -> dict[str, Any]:
        """Parameter counts per part, trainable, frozen and in total.

        ``atl``, ``decoder`` (mask decoder + no-mask embedding), ``band_adapter``, ``trainable``, ``frozen``, ``total``
        and ``trainable_ratio`` (trainable / total).
        """
        counts = count_parameters(self)
        return {
            'atl': sum(p.numel() for p in self.atl.parameters()),
            'decoder': sum(p.numel() for p in self.decoder.parameters()),
            'band_adapter': sum(p.numel() for p in self.encoder.band_adapter.parameters()),
            **counts,
            'trainable_ratio': counts['trainable'] / counts['total'],
        }

    def describe(self) -> dict[str, Any]:
        """Plain facts about the model for logs and reports."""
        return {**super().describe(), 'atl': self.atl_kind, **self.parameter_report()}
