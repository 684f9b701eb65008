"""SAM's own mask decoder used without prompts (TransLandSeg), and SAM's neck.

:class:`PromptFreeMaskDecoder` wraps segment-anything's :class:`~segment_anything.modeling.MaskDecoder` (a two-way
transformer over the 256-channel image embedding plus learned output tokens) so that it segments without any user
prompt, as TransLandSeg does:

* the sparse prompt is empty (zero tokens), so only SAM's IoU token and mask tokens query the image;
* the dense prompt is SAM's learned "no mask" embedding broadcast over the grid;
* the image positional encoding is SAM's random-Fourier :class:`PositionEmbeddingRandom` (128 frequencies = 256
  channels), evaluated on the actual feature grid (so any grid size works);
* only the first mask token's output is computed (``multimask_output=False``), at 4x the grid resolution.

Differences from the TransLandSeg reference code (``models/sam.py`` there):

* **batch size**: the reference builds the prompt tensors with batch 1 and relies on broadcasting inside the
  transformer; here every tensor carries the batch dimension and the output is checked against running SAM's decoder
  image by image.
* **pretrained prompt embeddings**: the reference creates the positional-encoding module outside SAM's prompt
  encoder and loads the SAM checkpoint with ``strict=False``, so SAM's pretrained Gaussian PE matrix and
  ``no_mask_embed`` are silently *not* loaded (the PE stays random, ``no_mask_embed`` is learned from scratch).
  :meth:`PromptFreeMaskDecoder.load_sam_weights` loads both by default; ``reference_random_prompt_pe=True``
  reproduces the reference behaviour on purpose.

:func:`build_sam_neck` builds SAM's neck (1x1 conv -> LayerNorm2d -> 3x3 conv -> LayerNorm2d, C -> 256) with
segment-anything's key names, and :func:`load_sam_neck` loads it from a SAM checkpoint: :class:`SAMEncoder` does not
keep the neck, so a model that feeds SAM's mask decoder builds it next to the encoder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from segment_anything.modeling import MaskDecoder, TwoWayTransformer
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom
from torch import Tensor, nn

from ...checkpoint import WEIGHT_FILE_ARGS, load_checkpoint_file
from ...errors import CheckpointError, ConfigError

__all__ = [
    'PROMPT_EMBEDDING_KEYS',
    'PromptFreeMaskDecoder',
    'build_sam_neck',
    'load_sam_neck',
    'sam_neck_filter',
]

#: Keys of SAM's prompt encoder that the prompt-free decoder uses, official name -> name in this module.
PROMPT_EMBEDDING_KEYS: dict[str, str] = {
    'prompt_encoder.pe_layer.positional_encoding_gaussian_matrix': 'pe_layer.positional_encoding_gaussian_matrix',
    'prompt_encoder.no_mask_embed.weight': 'no_mask_embed.weight',
}


def _read_state(source: str | os.PathLike[str] | Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """A flat state dict and a name for messages, from a file path or an already loaded dict."""
    if isinstance(source, Mapping):
        state = dict(source)
        name = 'state dict'
    else:
        raw = load_checkpoint_file(source, expected=WEIGHT_FILE_ARGS['sam_checkpoint'])
        state = raw.get('state_dict', raw) if isinstance(raw, dict) else {}
        name = os.fspath(source)
    if not isinstance(state, dict):
        state = {}
    return state, name


class PromptFreeMaskDecoder(nn.Module):
    """SAM's mask decoder driven without prompts: image embedding in, one mask logit map out.

    Args:
        transformer_dim: channels of the image embedding (SAM: 256).
        transformer_depth: two-way transformer layers (SAM: 2).
        transformer_mlp_dim: MLP width inside the transformer (SAM: 2048).
        transformer_heads: attention heads (SAM: 8).
        num_multimask_outputs: SAM's multimask tokens (SAM: 3). Kept so that SAM's weights load; only the
            single-mask token is used.
        iou_head_depth: depth of SAM's IoU-prediction MLP (SAM: 3; kept for weight loading, unused in forward).
        iou_head_hidden_dim: width of the IoU head (SAM: 256).

    Shapes:
        input B x transformer_dim x h x w (SAM's neck output; h = w = 64 for a 1024 px input);
        output B x 1 x 4h x 4w logits.

    The parameters (about 4.06 M with SAM's sizes) count as trainable, including SAM's IoU head and the three
    multimask tokens/hypernetworks, as in TransLandSeg; those never receive a gradient (their outputs are not used),
    so a DDP run needs ``find_unused_parameters=True``.
    """

    def __init__(
        self,
        transformer_dim: int = 256,
        transformer_depth: int = 2,
        transformer_mlp_dim: int = 2048,
        transformer_heads: int = 8,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        if transformer_dim % 2:
            raise ConfigError(f'transformer_dim must be even (sin/cos positional encoding), got {transformer_dim}')
        self.transformer_dim = transformer_dim
        self.mask_decoder = MaskDecoder(
            transformer_dim=transformer_dim,
            transformer=TwoWayTransformer(
                depth=transformer_depth,
                embedding_dim=transformer_dim,
                mlp_dim=transformer_mlp_dim,
                num_heads=transformer_heads,
            ),
            num_multimask_outputs=num_multimask_outputs,
            iou_head_depth=iou_head_depth,
            iou_head_hidden_dim=iou_head_hidden_dim,
        )
        self.pe_layer = PositionEmbeddingRandom(transformer_dim // 2)
        self.no_mask_embed = nn.Embedding(1, transformer_dim)
        #: what :meth:`load_sam_weights` loaded: ``None`` (random init), ``'decoder'`` or ``'decoder+prompt'``.
        self.loaded_from: str | None = None

    # ------------------------------------------------------------------ weights
    def load_sam_weights(
        self,
        source: str | os.PathLike[str] | Mapping[str, Tensor],
        reference_random_prompt_pe: bool = False,
    ) -> list[str]:
        """Load SAM's pretrained mask decoder (and prompt embeddings) from an official SAM checkpoint.

        Reads ``mask_decoder.*`` and, unless ``reference_random_prompt_pe``, the prompt encoder's
        ``pe_layer.positional_encoding_gaussian_matrix`` and ``no_mask_embed.weight``.

        Args:
            source: path of an official checkpoint (``sam_vit_{b,l,h}_*.pth``) or its loaded state dict.
            reference_random_prompt_pe: reproduce the TransLandSeg reference code, which leaves the positional
                encoding random and learns ``no_mask_embed`` from scratch (they are not loaded).

        Returns:
            The names (relative to this module) of the tensors that were loaded.

        Raises:
            CheckpointError: the checkpoint holds no SAM mask decoder, or one of another size.
        """
        state, name = _read_state(source)
        weights = {k[len('mask_decoder.') :]: v for k, v in state.items() if k.startswith('mask_decoder.')}
        if not weights:
            raise CheckpointError(
                f'{name}: no SAM mask decoder found (expected keys like mask_decoder.iou_token.weight, as in the '
                f'official sam_vit_{{b,l,h}}_*.pth files)'
            )
        self._check_and_load(self.mask_decoder, weights, name, 'mask_decoder.')
        loaded = [f'mask_decoder.{k}' for k in weights]
        self.loaded_from = 'decoder'
        if not reference_random_prompt_pe:
            missing = [k for k in PROMPT_EMBEDDING_KEYS if k not in state]
            if missing:
                raise CheckpointError(
                    f'{name}: SAM prompt-encoder weights {missing} are missing; pass reference_random_prompt_pe=True '
                    f'to keep a random positional encoding and learn no_mask_embed from scratch'
                )
            prompt = {ours: state[theirs] for theirs, ours in PROMPT_EMBEDDING_KEYS.items()}
            self._check_and_load(self, prompt, name, '')
            loaded += list(prompt)
            self.loaded_from = 'decoder+prompt'
        return loaded

    @staticmethod
    def _check_and_load(module: nn.Module, weights: dict[str, Tensor], name: str, prefix: str) -> None:
        expected = module.state_dict()
        if module.__class__ is not MaskDecoder:
            expected = {k: v for k, v in expected.items() if k in weights}
        missing = sorted(set(expected) - set(weights))
        if missing:
            raise CheckpointError(f'{name}: SAM mask decoder weights are incomplete, missing {prefix}{missing[0]} ...')
        for k, v in weights.items():
            if k not in expected:
                raise CheckpointError(f'{name}: unexpected mask decoder tensor {prefix}{k}')
            if tuple(v.shape) != tuple(expected[k].shape):
                raise CheckpointError(
                    f'{name}: {prefix}{k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)} '
                    f'(a SAM decoder of another width?)'
                )
        with torch.no_grad():
            for k, v in weights.items():
                expected[k].copy_(v)

    # ------------------------------------------------------------------ forward
    def image_pe(self, grid: tuple[int, int]) -> Tensor:
        """SAM's dense positional encoding for an h x w grid: 1 x transformer_dim x h x w."""
        return self.pe_layer(grid).unsqueeze(0)

    def forward(self, image_embeddings: Tensor) -> Tensor:
        """Single-mask logits without prompts.

        Equivalent, image by image, to ``MaskDecoder(image_embeddings, image_pe, sparse (1 x 0 x D),
        dense = no_mask_embed, multimask_output=False)[0]``, but batched properly and without computing the unused
        multimask and IoU outputs.

        Args:
            image_embeddings: B x D x h x w (D = transformer_dim).

        Returns:
            B x 1 x 4h x 4w mask logits.
        """
        if image_embeddings.ndim != 4 or image_embeddings.shape[1] != self.transformer_dim:
            raise ValueError(
                f'expected an image embedding B x {self.transformer_dim} x h x w, got {tuple(image_embeddings.shape)}'
            )
        md = self.mask_decoder
        b, d, h, w = image_embeddings.shape
        # Output tokens (IoU token + mask tokens) followed by the empty sparse prompt: B x (1 + M) x D.
        tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
        tokens = tokens.unsqueeze(0).expand(b, -1, -1).to(image_embeddings.dtype)
        src = image_embeddings + self.no_mask_embed.weight.reshape(1, d, 1, 1).to(image_embeddings.dtype)
        pos = self.image_pe((h, w)).to(image_embeddings.dtype).expand(b, -1, -1, -1)
        hs, src = md.transformer(src, pos, tokens)
        mask_token = hs[:, 1, :]  # the single-mask output token, B x D
        upscaled = md.output_upscaling(src.transpose(1, 2).reshape(b, d, h, w))  # B x D/8 x 4h x 4w
        hyper = md.output_hypernetworks_mlps[0](mask_token)  # B x D/8
        _, c, uh, uw = upscaled.shape
        return (hyper.unsqueeze(1) @ upscaled.reshape(b, c, uh * uw)).reshape(b, 1, uh, uw)


# ---------------------------------------------------------------------- SAM's neck
def build_sam_neck(embed_dim: int, out_chans: int = 256) -> nn.Sequential:
    """SAM's neck, as ``ImageEncoderViT`` builds it (state-dict keys ``0.weight``, ``1.weight``, ``1.bias``, ...).

    Args:
        embed_dim: ViT token width C.
        out_chans: embedding channels (SAM: 256).

    Returns:
        A module mapping B x C x h x w to B x out_chans x h x w.
    """
    return nn.Sequential(
        nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
        LayerNorm2d(out_chans),
        nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(out_chans),
    )


def sam_neck_filter(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The neck weights (keys relative to the neck) from an official SAM checkpoint or one of this package's models.

    The neck is ``image_encoder.neck.*`` in an official SAM checkpoint, ``neck.*`` or ``model.neck.*`` in this package's
    models; empty when there is none.
    """
    for prefix in ('image_encoder.neck.', 'neck.', 'model.neck.', 'encoder.vit.neck.'):
        sub = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if sub:
            return sub
    return {}


def load_sam_neck(neck: nn.Module, source: str | os.PathLike[str] | Mapping[str, Tensor]) -> None:
    """Load SAM's neck weights into ``neck`` (built by :func:`build_sam_neck`).

    Raises:
        CheckpointError: no neck in the checkpoint, or one of other sizes.
    """
    state, name = _read_state(source)
    weights = sam_neck_filter(state)
    if not weights:
        raise CheckpointError(f'{name}: no SAM neck found (expected keys image_encoder.neck.*, as in sam_vit_*.pth)')
    expected = neck.state_dict()
    if set(weights) != set(expected):
        raise CheckpointError(f'{name}: SAM neck keys {sorted(weights)} do not match {sorted(expected)}')
    for k, v in weights.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(
                f'{name}: neck.{k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)} (another SAM size?)'
            )
    neck.load_state_dict(weights, strict=True)
