"""Segmentation losses: the reference's 0.5 BCE-with-logits + 0.5 Dice, with the options users ask for."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError

__all__ = ['BCEDiceLoss', 'dice_loss']


def dice_loss(
    logits: Tensor, target: Tensor, smooth: float = 1.0, reduction: Literal['batch', 'image'] = 'batch'
) -> Tensor:
    """Soft Dice loss on sigmoid probabilities.

    Args:
        logits: B x 1 x H x W or B x H x W logits.
        target: same shape (or B x H x W), values {0, 1}.
        smooth: additive smoothing in numerator and denominator (reference: 1).
        reduction: ``'batch'`` computes one Dice over the whole flattened batch (the reference's ``calc_loss``);
            ``'image'`` computes Dice per image and averages.

    Returns:
        Scalar loss ``1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)``.
    """
    p = torch.sigmoid(logits.float()).reshape(logits.shape[0], -1)
    t = target.float().reshape(target.shape[0], -1)
    if reduction == 'batch':
        p, t = p.reshape(1, -1), t.reshape(1, -1)
    elif reduction != 'image':
        raise ConfigError(f"reduction must be 'batch' or 'image', got {reduction!r}")
    inter = (p * t).sum(dim=1)
    dice = (2 * inter + smooth) / (p.sum(dim=1) + t.sum(dim=1) + smooth)
    return (1 - dice).mean()


class BCEDiceLoss(nn.Module):
    """``bce_weight * BCEWithLogits(mean) + dice_weight * Dice``.

    Defaults reproduce the reference (SAM-CFFNet ``utils/loss.py`` ``calc_loss``; TransLandSeg uses the same).

    Args:
        bce_weight: weight of the BCE term (reference 0.5).
        dice_weight: weight of the Dice term (reference 0.5).
        pos_weight: BCE weight of the landslide class (``None`` = 1, the reference).
        dice_reduction: ``'batch'`` (reference) or ``'image'``.
        smooth: Dice smoothing (reference 1).

    Shapes: logits B x 1 x H x W, target B x H x W (int or float {0, 1}) -> scalar.

    Raises:
        ConfigError: an unknown ``dice_reduction``, or weights that are negative or both zero (checked when the loss
            is built, before any training).
    """

    def __init__(
        self,
        bce_weight: float = 0.5,
        dice_weight: float = 0.5,
        pos_weight: float | None = None,
        dice_reduction: Literal['batch', 'image'] = 'batch',
        smooth: float = 1.0,
    ) -> None:
        super().__init__()
        if dice_reduction not in ('batch', 'image'):
            raise ConfigError(f"dice_reduction must be 'batch' or 'image', got {dice_reduction!r}")
        if bce_weight < 0 or dice_weight < 0 or bce_weight + dice_weight <= 0:
            raise ConfigError(
                f'bce_weight ({bce_weight}) and dice_weight ({dice_weight}) must be >= 0, not both 0 (no loss)'
            )
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight
        self.dice_reduction = dice_reduction
        self.smooth = smooth
        self.register_buffer('pos_weight', torch.tensor([pos_weight]) if pos_weight is not None else None)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The weighted sum of the BCE and Dice losses of ``logits`` against the binary ``target``."""
        if logits.ndim == 4 and logits.shape[1] == 1:
            logits = logits[:, 0]
        if logits.shape != target.shape:
            raise ValueError(f'logits {tuple(logits.shape)} and mask {tuple(target.shape)} differ in shape')
        t = target.float()
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.bce_weight:
            bce = F.binary_cross_entropy_with_logits(logits.float(), t, pos_weight=self.pos_weight)
            loss = loss + self.bce_weight * bce
        if self.dice_weight:
            loss = loss + self.dice_weight * dice_loss(logits, t, self.smooth, self.dice_reduction)
        return loss
