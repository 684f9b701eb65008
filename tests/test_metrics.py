"""Metrics against hand-computed confusion matrices, and the loss against the reference's formula."""

from __future__ import annotations

import math

import pytest
import torch

from sam_cffnet.losses import BCEDiceLoss, dice_loss
from sam_cffnet.metrics import LandslideMetrics, metrics_from_confusion
from sam_cffnet.thresholds import ThresholdRule


def test_hand_computed_confusion_matrix() -> None:
    # truth rows, prediction columns: TN=50, FP=10, FN=5, TP=35
    m = metrics_from_confusion(torch.tensor([[50, 10], [5, 35]]))
    p1, r1 = 35 / 45, 35 / 40
    p0, r0 = 50 / 55, 50 / 60
    f1_1 = 2 * p1 * r1 / (p1 + r1)
    f1_0 = 2 * p0 * r0 / (p0 + r0)
    iou1, iou0 = 35 / (35 + 10 + 5), 50 / (50 + 10 + 5)
    expected = {
        'landslide_iou': iou1,
        'background_iou': iou0,
        'miou': (iou0 + iou1) / 2,
        'landslide_precision': p1,
        'landslide_recall': r1,
        'landslide_f1': f1_1,
        'macro_precision': (p0 + p1) / 2,
        'macro_recall': (r0 + r1) / 2,
        'macro_f1': (f1_0 + f1_1) / 2,
        'overall_accuracy': 85 / 100,
        'fwiou': 0.6 * iou0 + 0.4 * iou1,
    }
    for name, value in expected.items():
        assert m[name].item() == pytest.approx(value, abs=1e-12), name
    # landslide F1 = 2 IoU / (1 + IoU) for the same class: the two are not confusable with the macro mean
    assert m['landslide_f1'].item() == pytest.approx(2 * iou1 / (1 + iou1))
    assert m['macro_f1'].item() != pytest.approx(m['landslide_f1'].item())


def test_no_landslide_anywhere_gives_nan_not_zero() -> None:
    m = metrics_from_confusion(torch.tensor([[100, 0], [0, 0]]))
    assert math.isnan(m['landslide_iou'].item())
    assert m['miou'].item() == 1.0  # nanmean over the defined class, as the reference


def test_accumulates_over_batches_not_mean_of_batches() -> None:
    metric = LandslideMetrics()
    logits = torch.tensor([[[[5.0, -5.0], [-5.0, -5.0]]], [[[5.0, 5.0], [5.0, 5.0]]]])
    target = torch.tensor([[[1, 1], [0, 0]], [[1, 1], [1, 1]]])
    metric.update(logits[:1], target[:1])  # batch IoU 1/2
    metric.update(logits[1:], target[1:])  # batch IoU 1
    assert metric.compute()['landslide_iou'].item() == pytest.approx(5 / 6)  # global, not (0.5 + 1) / 2


def test_logit_threshold_quirk() -> None:
    logits = torch.tensor([[[0.3, 0.7]]])  # probabilities 0.574 and 0.668
    target = torch.tensor([[[1, 1]]])
    prob_rule = LandslideMetrics()
    logit_rule = LandslideMetrics(ThresholdRule(0.5, on_logits=True))
    prob_rule.update(logits, target)
    logit_rule.update(logits, target)
    assert prob_rule.confmat.tolist() == [[0, 0], [0, 2]]
    assert logit_rule.confmat.tolist() == [[0, 0], [1, 1]]  # the reference's `logit > 0.5` drops 0.3


def test_bce_dice_matches_reference_formula() -> None:
    logits = torch.randn(3, 1, 8, 8)
    target = (torch.rand(3, 8, 8) > 0.7).long()
    p = torch.sigmoid(logits[:, 0])
    t = target.float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], t)
    dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)  # the reference's calc_loss, whole batch
    assert BCEDiceLoss()(logits, target).item() == pytest.approx((0.5 * bce + 0.5 * dice).item(), rel=1e-6)


def test_loss_options() -> None:
    logits = torch.randn(2, 1, 4, 4)
    target = (torch.rand(2, 4, 4) > 0.5).long()
    per_image = dice_loss(logits, target, reduction='image')
    manual = torch.stack([dice_loss(logits[i : i + 1], target[i : i + 1]) for i in range(2)]).mean()
    assert per_image.item() == pytest.approx(manual.item())
    weighted = BCEDiceLoss(1.0, 0.0, pos_weight=3.0)(logits, target)
    plain = BCEDiceLoss(1.0, 0.0)(logits, target)
    assert weighted.item() > plain.item()
    with pytest.raises(ValueError, match='differ in shape'):
        BCEDiceLoss()(logits, target[:, :2])
