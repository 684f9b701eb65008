"""Binary landslide metrics from one confusion matrix accumulated over the whole split.

The reference (SAM-CFFNet ``utils/Evaluator.py``) accumulates ``M[gt, pred]`` over every evaluated pixel and reports
landslide-class IoU next to **macro** (mean over background and landslide) precision, recall and F1. Both kinds are
logged here under names that cannot be confused:

========================  ==============================================================
name                      definition (M = 2 x 2 confusion matrix, rows = truth, 1 = landslide)
========================  ==============================================================
``landslide_iou``         M11 / (M11 + M10 + M01)   (the paper's "IoU")
``landslide_f1``          2 P1 R1 / (P1 + R1)       (landslide-class F1, as L4S's competition)
``landslide_precision``   M11 / (M11 + M01)
``landslide_recall``      M11 / (M11 + M10)
``background_iou``        M00 / (M00 + M01 + M10)
``miou``                  mean of the two IoUs      (the paper's "mIoU")
``overall_accuracy``      trace / sum
``macro_precision``       (P0 + P1) / 2             (the paper's "Precision")
``macro_recall``          (R0 + R1) / 2             (the paper's "Recall")
``macro_f1``              (F1_0 + F1_1) / 2         (the paper's "F1")
``fwiou``                 frequency-weighted IoU
========================  ==============================================================

Undefined ratios (0 / 0) are NaN; ``miou`` and the macro means ignore NaN like the reference's ``nanmean``.
The state is summed across processes under DDP (torchmetrics), so every rank reports the global value.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from .thresholds import ThresholdRule

__all__ = ['LandslideMetrics', 'metrics_from_confusion']


def _div(a: Tensor, b: Tensor) -> Tensor:
    return torch.where(b > 0, a / b.clamp(min=1e-12), torch.full_like(a, float('nan')))


def metrics_from_confusion(cm: Tensor) -> dict[str, Tensor]:
    """All metrics from a 2 x 2 confusion matrix ``cm[truth, prediction]`` (class 1 = landslide)."""
    cm = cm.double()
    tp = cm.diag()
    rows, cols = cm.sum(1), cm.sum(0)
    precision = _div(tp, cols)
    recall = _div(tp, rows)
    f1 = _div(2 * precision * recall, precision + recall)
    iou = _div(tp, rows + cols - tp)
    total = cm.sum()
    freq = _div(rows, total.expand(2))
    valid = freq > 0
    return {
        'landslide_iou': iou[1],
        'landslide_f1': f1[1],
        'landslide_precision': precision[1],
        'landslide_recall': recall[1],
        'background_iou': iou[0],
        'miou': iou.nanmean(),
        'overall_accuracy': _div(tp.sum(), total),
        'macro_precision': precision.nanmean(),
        'macro_recall': recall.nanmean(),
        'macro_f1': f1.nanmean(),
        'fwiou': (freq[valid] * iou[valid].nan_to_num()).sum(),
    }


class LandslideMetrics(Metric):
    """Global binary confusion matrix with paper-exact, unambiguous metric names.

    Args:
        rule: the decision rule (:class:`~sam_cffnet.thresholds.ThresholdRule`; default probability > 0.5). The
            reference's ``logit > 0.5`` is ``ThresholdRule(0.5, on_logits=True)`` (= probability > 0.6225).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, rule: ThresholdRule | None = None) -> None:
        super().__init__()
        self.rule = rule or ThresholdRule()
        self.add_state('confmat', default=torch.zeros(2, 2, dtype=torch.long), dist_reduce_fx='sum')

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Accumulate a batch.

        Args:
            logits: B x 1 x H x W or B x H x W logits.
            target: B x H x W, values {0, 1}.
        """
        if logits.ndim == 4 and logits.shape[1] == 1:
            logits = logits[:, 0]
        pred = self.rule.from_logits(logits).reshape(-1)
        truth = target.reshape(-1).long()
        self.confmat += torch.bincount(truth * 2 + pred, minlength=4).reshape(2, 2)

    def compute(self) -> dict[str, Tensor]:
        """The metric dict (see the module docstring)."""
        return metrics_from_confusion(self.confmat)
