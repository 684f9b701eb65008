"""The one rule that turns model outputs into landslide / background.

Metrics, predictions, the validation figures and whole-scene maps all use a :class:`ThresholdRule`, so a change of
rule reaches all of them at once. Two rules exist:

* ``p > t`` on probabilities ``p = sigmoid(logit)`` (default, ``t = 0.5``);
* ``logit > t`` on logits (``on_logits=True``): the SAM-CFFNet authors' code (``torch.where(output > 0.5, 1, 0)``
  on logits, ``utils/tools.py``), which with ``t = 0.5`` equals ``p > sigmoid(0.5) = 0.6225``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from .errors import ConfigError

__all__ = ['ThresholdRule']


@dataclass(frozen=True)
class ThresholdRule:
    """Binary decision rule.

    Attributes:
        threshold: the threshold ``t``.
        on_logits: compare logits with ``t`` (the authors' rule) instead of probabilities.
    """

    threshold: float = 0.5
    on_logits: bool = False

    def __post_init__(self) -> None:
        if not self.on_logits and not 0.0 < self.threshold < 1.0:
            raise ConfigError(f'a probability threshold must be in (0, 1), got {self.threshold}')

    @property
    def probability_threshold(self) -> float:
        """The same rule on probabilities: ``t``, or ``sigmoid(t)`` for the logit rule."""
        return 1.0 / (1.0 + math.exp(-self.threshold)) if self.on_logits else float(self.threshold)

    def from_logits(self, logits: Tensor) -> Tensor:
        """Binary prediction from logits.

        Args:
            logits: any shape.

        Returns:
            int64 tensor of the same shape, 1 = landslide.
        """
        if self.on_logits:
            return (logits > self.threshold).long()
        return (torch.sigmoid(logits.float()) > self.threshold).long()

    def from_probabilities(self, probabilities: Tensor) -> Tensor:
        """Binary prediction from probabilities (e.g. a blended probability map), any shape -> int64."""
        return (probabilities > self.probability_threshold).long()

    def describe(self) -> str:
        """A human description (for logs, raster tags and reports)."""
        if self.on_logits:
            return f'logit > {self.threshold:g} (= probability > {self.probability_threshold:.4f})'
        return f'probability > {self.threshold:g}'

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ThresholdRule:
        """Inverse of :meth:`to_dict` (``None``: the default rule)."""
        return cls(**(data or {}))
