"""HPCL-Net: frozen SAM optical encoder + DEM branch fused in feature space + CFFD decoder, with contrastive learning.

The contrastive learning is hyper-pixel-wise (Zhou, Peng, Yu, Ge, Xiang, arXiv 2308.01251).

Only the paper's abstract was available; this is a reconstruction from it, on top of this package's SAM-CFFNet
(the abstract does not name the backbone or the decoder). Every choice below is an argument of :class:`HPCLNet`:

* optical branch: the frozen SAM encoder of SAM-CFFNet (same taps, same CFFD decoder);
* DEM branch: terrain features (elevation, slope, aspect, hillshade; :mod:`.terrain`) -> a small CNN
  (:mod:`.dem_branch`) -> one map on the token grid, fused into each tapped level before the decoder
  (:mod:`.fusion`: ``'concat'``, ``'gated'``, or ``'none'`` = no DEM);
* HPCL (training only; inference runs the segmentation path alone): hyper-pixels (:mod:`.hyperpixel`) of an
  embedding map (``contrast_source='fused'``: the selected fused levels, concatenated; ``'decoder'``: the CFFD's
  merged deep features), a projection head (Linear-ReLU-Linear, L2-normalised), a momentum (EMA) copy of the
  trainable parts involved (DEM branch, fusion, head, and the CFFD's CFFM + merge for ``'decoder'``), per-class
  global queues of momentum keys, InfoNCE with temperature (:mod:`.contrastive`). The frozen SAM features are
  computed once and shared by the online and momentum paths.

Total training loss = segmentation loss + ``contrastive_weight`` x contrastive loss (the task adds the auxiliary
term returned by :meth:`HPCLNet.training_outputs`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ..base import count_parameters, model_inputs
from ..decoders.cffd import CFFD
from ..registry import register_model
from ..sam_segmenter import SAMSegmenter
from .contrastive import ClassQueues, ema_update, hyperpixel_infonce
from .dem_branch import DEMBranch
from .fusion import FUSION_MODES, FusionMode, build_fusion
from .hyperpixel import HyperPixelizer, sample_hyperpixels

__all__ = ['HPCLNet']


class _Momentum(nn.Module):
    """Container of the momentum (EMA) copies; never trained (``requires_grad=False``)."""


@register_model('hpcl_net')
class HPCLNet(SAMSegmenter):
    """HPCL-Net (reconstruction from the abstract; see the module docstring).

    Optical encoder and decoder (as :class:`~sam_cffnet.models.SAMCFFNet`):

    Args:
        shared: CFFD weight sharing.
        decoder_channels: CFFD width.

    DEM branch and fusion:

    Args:
        fusion: ``'gated'`` (default), ``'concat'`` or ``'none'`` (no DEM: the ablation baseline).
        fusion_levels: which of the four tapped levels receive the DEM features (default all).
        dem_in_channels: channels of ``batch['dem']`` (Bijie 1: elevation; Landslide4Sense 2: slope, elevation).
        elevation_channel: index of the elevation in ``batch['dem']`` (``None``: derive nothing).
        terrain_features: derived from the elevation (``'elevation'``, ``'slope'``, ``'aspect'``, ``'hillshade'``).
        pixel_size: pixel size for slope/hillshade in the DEM's unit (the datamodules z-score the DEM per tile,
            so this only sets the scale of a *relative* slope; aspect is unaffected).
        dem_channels: widths of the DEM CNN's stride-2 stages.
        dem_out_channels: width of the DEM feature map.
        dem_input_norm: ``'batch'`` or ``'none'`` normalization of the DEM CNN input.

    Hyper-pixel-wise contrastive learning:

    Args:
        hpcl: build the contrastive part (head, momentum copy, queues). ``False`` = fusion-only model.
        contrastive_weight: weight of the contrastive loss. 0 with ``hpcl=True`` keeps the modules (checkpoint
            compatible) but freezes the head and skips the loss: training is then exactly the fusion-only model's.
        contrast_source: ``'fused'`` (the fused encoder levels ``contrast_levels``, concatenated) or
            ``'decoder'`` (the CFFD's merged deep features, decoder_channels wide).
        contrast_levels: fused levels used with ``'fused'`` (default: ``fusion_levels``).
        embed_dim: embedding (key) dimension.
        head_hidden: hidden width of the projection head.
        temperature: InfoNCE temperature tau.
        momentum: EMA momentum m of the key encoder.
        queue_size: keys kept per class.
        positive: ``'class'`` (supervised InfoNCE against same-class keys) or ``'self'`` (MoCo pair + other-class
            negatives); see :func:`~.contrastive.hyperpixel_infonce`.
        samples_per_class: query hyper-pixels per class and batch (per rank).
        boundary_ratio: share of the queries drawn near mask boundaries.
        hyperpixel_mode: ``'grid'`` or ``'superpixel'``.
        hyperpixel_size: grid patch side in feature-grid cells.
        num_superpixels: superpixels per tile.
        superpixel_resolution: working side of the superpixel computation.
        superpixel_compactness: SLIC spatial weight.
        label_threshold: landslide fraction from which a hyper-pixel is landslide.
        min_purity: hyper-pixels less pure than this are not sampled.
        boundary_width: boundary band half-width in tile pixels (``None``: one hyper-pixel).

    Optical encoder:

    Args:
        **encoder_args: the frozen SAM encoder's options (:class:`~sam_cffnet.models.encoders.sam.SAMEncoder`:
            ``variant``, ``sam_checkpoint``, ``input_size``, ``sam_normalize``, ``in_channels`` (optical bands,
            linked from the datamodule), ``band_adapter``, ``band_indices``, ``attention``, ``autocast``,
            ``channels_last``), as :class:`~sam_cffnet.models.SAMCFFNet`.

    Shapes:
        ``forward(image B x in_channels x H x W, dem B x dem_in_channels x H x W)`` -> logits B x 1 x H x W.
    """

    def __init__(
        self,
        shared: bool = True,
        decoder_channels: int = 256,
        fusion: FusionMode = 'gated',
        fusion_levels: Sequence[int] = (0, 1, 2, 3),
        dem_in_channels: int = 1,
        elevation_channel: int | None = 0,
        terrain_features: Sequence[str] = ('elevation', 'slope', 'aspect', 'hillshade'),
        pixel_size: float = 1.0,
        dem_channels: Sequence[int] = (32, 64, 128, 128),
        dem_out_channels: int = 128,
        dem_input_norm: Literal['batch', 'none'] = 'batch',
        hpcl: bool = True,
        contrastive_weight: float = 0.1,
        contrast_source: Literal['fused', 'decoder'] = 'fused',
        contrast_levels: Sequence[int] | None = None,
        embed_dim: int = 128,
        head_hidden: int = 256,
        temperature: float = 0.1,
        momentum: float = 0.999,
        queue_size: int = 4096,
        positive: Literal['class', 'self'] = 'class',
        samples_per_class: int = 128,
        boundary_ratio: float = 0.5,
        hyperpixel_mode: Literal['grid', 'superpixel'] = 'grid',
        hyperpixel_size: int = 2,
        num_superpixels: int = 64,
        superpixel_resolution: int = 64,
        superpixel_compactness: float = 0.5,
        label_threshold: float = 0.5,
        min_purity: float = 0.75,
        boundary_width: int | None = None,
        **encoder_args: Any,
    ) -> None:
        super().__init__(**encoder_args)
        enc = self.encoder
        self.decoder = CFFD(enc.embed_dim, decoder_channels, 64, shared)
        if fusion not in FUSION_MODES:
            raise ConfigError(f'fusion must be one of {FUSION_MODES}, got {fusion!r}')
        num_levels = len(enc.out_indices)
        levels = sorted({int(i) for i in fusion_levels})
        if not levels or levels[0] < 0 or levels[-1] >= num_levels:
            raise ConfigError(f'fusion_levels must be indices in [0, {num_levels - 1}], got {list(fusion_levels)}')
        if contrast_source not in ('fused', 'decoder'):
            raise ConfigError(f"contrast_source must be 'fused' or 'decoder', got {contrast_source!r}")
        if not 0.0 <= momentum <= 1.0 or temperature <= 0 or contrastive_weight < 0:
            raise ConfigError(f'need 0 <= momentum <= 1, temperature > 0, contrastive_weight >= 0; got {momentum}, '
                             f'{temperature}, {contrastive_weight}')  # fmt: skip
        if not 0.0 <= boundary_ratio <= 1.0 or samples_per_class < 1:
            raise ConfigError(f'need 0 <= boundary_ratio <= 1 and samples_per_class >= 1, got {boundary_ratio}, '
                             f'{samples_per_class}')  # fmt: skip
        if hpcl and contrast_source == 'fused' and fusion == 'none':
            raise ConfigError(
                "contrast_source='fused' with fusion='none' would only train the projection head (the fused features "
                "are the frozen SAM features); use contrast_source='decoder' or hpcl=false"
            )
        self.fusion_mode = fusion
        self.fusion_levels = tuple(levels) if fusion != 'none' else ()
        self.input_keys = ('image',) if fusion == 'none' else ('image', 'dem')
        # Segmentation parts first (so the fusion-only and HPCL models initialise them identically).
        self.dem_branch: DEMBranch | None = None
        self.fusion = nn.ModuleDict()
        if fusion != 'none':
            self.dem_branch = DEMBranch(
                dem_in_channels, elevation_channel, terrain_features, pixel_size, dem_channels, dem_out_channels,
                dem_input_norm,
            )  # fmt: skip
            for i in self.fusion_levels:
                self.fusion[str(i)] = build_fusion(fusion, enc.embed_dim, dem_out_channels)  # type: ignore[assignment]
        # Contrastive parts (training only).
        self.hpcl = bool(hpcl)
        self.contrastive_weight = float(contrastive_weight)
        self.contrast_source = contrast_source
        self.contrast_levels = tuple(int(i) for i in (contrast_levels if contrast_levels is not None else levels))
        if contrast_source == 'fused' and (
            not self.contrast_levels or min(self.contrast_levels) < 0 or max(self.contrast_levels) >= num_levels
        ):
            raise ConfigError(f'contrast_levels must be indices in [0, {num_levels - 1}], got {contrast_levels}')
        self.temperature = float(temperature)
        self.momentum_value = float(momentum)
        self.positive = positive
        self.samples_per_class = int(samples_per_class)
        self.boundary_ratio = float(boundary_ratio)
        self.head: nn.Module | None = None
        self.momentum: _Momentum | None = None
        self.queues: ClassQueues | None = None
        self.hyperpixelizer: HyperPixelizer | None = None
        if self.hpcl:
            src_dim = decoder_channels if contrast_source == 'decoder' else enc.embed_dim * len(self.contrast_levels)
            self.head = nn.Sequential(
                nn.Linear(src_dim, head_hidden), nn.ReLU(inplace=True), nn.Linear(head_hidden, embed_dim)
            )
            self.hyperpixelizer = HyperPixelizer(
                hyperpixel_mode, hyperpixel_size, num_superpixels, superpixel_resolution, superpixel_compactness,
                label_threshold, min_purity, boundary_width,
            )  # fmt: skip
            self.queues = ClassQueues(2, queue_size, embed_dim)
            mom = _Momentum()
            for name, online in self._online_parts().items():
                setattr(mom, name, copy.deepcopy(online))
            mom.requires_grad_(False)
            self.momentum = mom
            if self.contrastive_weight == 0:
                self.head.requires_grad_(False)

    # ------------------------------------------------------------------ parts
    def _online_parts(self) -> dict[str, nn.Module]:
        """The trainable modules that have a momentum copy (name -> online module)."""
        parts: dict[str, nn.Module] = {}
        if self.dem_branch is not None:
            parts['dem_branch'] = self.dem_branch
            parts['fusion'] = self.fusion
        if self.contrast_source == 'decoder':
            parts['cffm'] = self.decoder.cffm
            parts['merge'] = self.decoder.merge
        if self.head is not None:
            parts['head'] = self.head
        return parts

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, momentum) module pairs updated by the EMA rule."""
        if self.momentum is None:
            return []
        return [(m, getattr(self.momentum, name)) for name, m in self._online_parts().items()]

    def extra_input_channels(self) -> dict[str, int]:
        """``{'dem': dem_in_channels}`` when the DEM is fused, else none."""
        return {'dem': self.dem_branch.in_channels} if self.dem_branch is not None else {}

    @property
    def contrastive_active(self) -> bool:
        """True when training computes the contrastive loss."""
        return self.hpcl and self.contrastive_weight > 0

    # ------------------------------------------------------------------ forward
    def _fuse(
        self, features: list[Tensor], dem: Tensor | None, dem_branch: nn.Module | None, fusion: nn.ModuleDict
    ) -> list[Tensor]:
        if dem_branch is None:
            return list(features)
        if dem is None:
            raise ConfigError(
                f"HPCL-Net with fusion={self.fusion_mode!r} needs the DEM: set the datamodule's dem_mode: separate "
                f"(batch['dem']), or use fusion: none"
            )
        d = dem_branch(dem, tuple(features[0].shape[-2:]))
        out = list(features)
        for key, module in fusion.items():
            out[int(key)] = module(out[int(key)], d)
        return out

    def _decode(self, fused: list[Tensor], image: Tensor, need_deep: bool) -> tuple[Tensor, Tensor | None]:
        """CFFD on the fused levels: (logits at the decoder's output size, deep features B x D x h x w or None)."""
        if not need_deep:
            return self.decoder(fused, image), None
        d = self.decoder
        deep = d.merge(torch.cat(d.cffm(fused), dim=1))
        h, w = deep.shape[-2:]
        up = F.interpolate(deep, size=(2 * h, 2 * w), mode='bilinear', align_corners=True)
        out = d.head(torch.cat([up, d.sfe(image, up)], dim=1))
        return F.interpolate(out, scale_factor=2, mode='bilinear', align_corners=True), deep

    @staticmethod
    def _resize(logits: Tensor, like: Tensor) -> Tensor:
        if logits.shape[-2:] != like.shape[-2:]:
            logits = F.interpolate(logits, size=like.shape[-2:], mode='bilinear', align_corners=False)
        return logits

    def forward(self, image: Tensor, dem: Tensor | None = None) -> Tensor:
        """Landslide logits (the segmentation path only: no contrastive cost at inference).

        Args:
            image: B x in_channels x H x W optical tile (normalized by the datamodule).
            dem: B x dem_in_channels x H x W DEM stack (``batch['dem']``); ignored (may be ``None``) with
                ``fusion='none'``.

        Returns:
            B x 1 x H x W logits.
        """
        out = self.encoder(image)
        fused = self._fuse(out.features, dem, self.dem_branch, self.fusion)
        logits, _ = self._decode(fused, out.image, need_deep=False)
        return self._resize(logits, image)

    def _embedding_map(self, fused: list[Tensor], deep: Tensor | None) -> Tensor:
        if self.contrast_source == 'decoder':
            assert deep is not None
            return deep
        return torch.cat([fused[i] for i in self.contrast_levels], dim=1)

    def training_outputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and ``{'contrastive_loss': contrastive_weight * loss}`` (empty without HPCL).

        Order of one training step: frozen encoder (once) -> online fusion/decoder -> hyper-pixels of the mask ->
        EMA update of the momentum copy -> momentum keys -> loss against the queues -> keys enqueued (gathered
        across ranks).

        Args:
            batch: ``image``, ``mask`` (B x H x W) and, with fusion, ``dem``.

        Returns:
            ``(logits B x 1 x H x W, aux_losses)``.
        """
        inputs = model_inputs(self, batch)
        if not self.contrastive_active:
            return self(*inputs), {}
        assert self.head is not None and self.momentum is not None and self.queues is not None
        assert self.hyperpixelizer is not None
        image, mask = batch['image'], batch['mask']
        dem = inputs[1] if self.dem_branch is not None else None
        out = self.encoder(image)
        need_deep = self.contrast_source == 'decoder'
        fused = self._fuse(out.features, dem, self.dem_branch, self.fusion)
        logits, deep = self._decode(fused, out.image, need_deep)
        logits = self._resize(logits, image)
        emb = self._embedding_map(fused, deep)

        hp = self.hyperpixelizer(mask, tuple(emb.shape[-2:]), out.image)
        idx = sample_hyperpixels(hp, self.samples_per_class, self.boundary_ratio)
        labels = hp.labels.flatten()[idx]
        queries = F.normalize(self.head(hp.pool(emb).flatten(0, 1)[idx]), dim=-1)

        with torch.no_grad():
            ema_update(self.ema_pairs(), self.momentum_value)
            m = self.momentum
            frozen = [f.detach() for f in out.features]
            m_fused = self._fuse(frozen, dem, getattr(m, 'dem_branch', None), getattr(m, 'fusion', nn.ModuleDict()))
            m_deep = m.merge(torch.cat(m.cffm(m_fused), dim=1)) if need_deep else None
            m_emb = self._embedding_map(m_fused, m_deep)
            keys = F.normalize(m.head(hp.pool(m_emb).flatten(0, 1)[idx]), dim=-1)
        stored, stored_labels = self.queues.stored()
        loss = hyperpixel_infonce(queries, labels, keys, labels, stored, stored_labels, self.temperature, self.positive)
        self.queues.push(keys, labels)
        return logits, {'contrastive_loss': self.contrastive_weight * loss}

    # ------------------------------------------------------------------ reports
    def parameter_report(self) -> dict[str, Any]:
        """Trainable parameters per part, and the frozen ones (encoder, momentum copy)."""
        report: dict[str, Any] = {
            'encoder (frozen SAM)': count_parameters(self.encoder)['total'],
            'band adapter (trainable)': count_parameters(self.encoder)['trainable'],
            'decoder (CFFD)': count_parameters(self.decoder)['trainable'],
            'dem_branch': count_parameters(self.dem_branch)['trainable'] if self.dem_branch is not None else 0,
            'fusion': count_parameters(self.fusion)['trainable'],
            'projection head': count_parameters(self.head)['trainable'] if self.head is not None else 0,
            'momentum copy (not trained)': count_parameters(self.momentum)['total'] if self.momentum is not None else 0,
            'queues (buffer entries)': self.queues.keys.numel() if self.queues is not None else 0,
        }
        report['trainable'] = count_parameters(self)['trainable']
        return report

    def describe(self) -> dict[str, Any]:
        """Plain facts for logs: parameter counts and the HPCL configuration."""
        return {
            **super().describe(),
            'fusion': self.fusion_mode,
            'hpcl': self.contrastive_active,
            'parts': self.parameter_report(),
        }
