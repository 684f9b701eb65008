"""Object scores: which reference landslides a map found or missed, which mapped polygons are true or false.

**Matching rule.** Every object (a reference landslide, or a mapped polygon) is compared with the objects of the
other side that overlap it, taken together, after setting aside the parts of those that overlap *other* objects of
its own side:

* a reference landslide ``r`` is **found** when ``IoU(r, B) >= t``, where ``B`` is the union of the mapped polygons
  overlapping ``r``, minus every other reference landslide overlapping those polygons;
* a mapped polygon ``m`` is a **true detection** when ``IoU(m, V) >= t``, where ``V`` is the union of the reference
  landslides overlapping ``m``, minus every other mapped polygon overlapping those landslides;
* otherwise ``r`` is **missed**, ``m`` is a **false detection**. ``t`` is ``--iou-threshold`` (default 0.5).

So a landslide mapped as two (or more) polygons (one-to-many, a split) is found when the pieces together cover it,
and each piece is a true detection; one polygon covering two (or more) landslides (many-to-one, a merge) finds each
landslide it covers well, and is a true detection when the landslides together fill it. Without a partner an object
has IoU 0. For a one-to-one pair the rule is the plain IoU of the pair. A polygon larger than a landslide still
finds it when the landslide fills at least ``t`` of it; a polygon covering half of a landslide (IoU 0.5) finds it at
``t = 0.5`` and misses it at ``t = 0.6``.

Recall = found / reference landslides; precision = true detections / mapped polygons; F1 their harmonic mean;
overall and per size class (reference landslides by their own area for recall, mapped polygons by theirs for
precision).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ['ObjectMatch', 'match_objects', 'object_scores', 'size_class_names']


@dataclass
class ObjectMatch:
    """The outcome of :func:`match_objects`.

    Attributes:
        reference_iou: ``(R,)`` IoU of each reference landslide with its mapped counterpart.
        mapped_iou: ``(M,)`` IoU of each mapped polygon with its reference counterpart.
        reference_partners: number of mapped polygons overlapping each reference landslide.
        mapped_partners: number of reference landslides overlapping each mapped polygon.
        threshold: ``t``.
        found: ``(R,)`` bool, ``reference_iou >= t``.
        true: ``(M,)`` bool, ``mapped_iou >= t``.
    """

    reference_iou: np.ndarray
    mapped_iou: np.ndarray
    reference_partners: np.ndarray
    mapped_partners: np.ndarray
    threshold: float
    found: np.ndarray = field(init=False)
    true: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.found = self.reference_iou >= self.threshold - 1e-9
        self.true = self.mapped_iou >= self.threshold - 1e-9


def _side_iou(objs: Sequence[Any], others: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """IoU of each of ``objs`` with its counterpart in ``others`` (see the module docstring) and partner counts."""
    import shapely

    n = len(objs)
    iou = np.zeros(n)
    partners = np.zeros(n, np.int64)
    if n == 0 or not others:
        return iou, partners
    own_tree = shapely.STRtree(list(objs))
    other_tree = shapely.STRtree(list(others))
    for i, obj in enumerate(objs):
        cand = other_tree.query(obj, predicate='intersects')
        hits = [int(j) for j in cand if shapely.intersection(obj, others[j]).area > 0]
        partners[i] = len(hits)
        if not hits:
            continue
        counterpart = shapely.union_all([others[j] for j in hits])
        rivals = {int(k) for j in hits for k in own_tree.query(others[j], predicate='intersects')} - {i}
        rivals = {k for k in rivals if shapely.intersection(objs[k], counterpart).area > 0}
        if rivals:
            counterpart = shapely.difference(counterpart, shapely.union_all([objs[k] for k in rivals]))
        inter = shapely.intersection(obj, counterpart).area
        union = obj.area + counterpart.area - inter
        iou[i] = inter / union if union > 0 else 0.0
    return iou, partners


def match_objects(reference: Sequence[Any], mapped: Sequence[Any], iou_threshold: float = 0.5) -> ObjectMatch:
    """Match reference landslides and mapped polygons by the rule of the module docstring.

    Args:
        reference: reference polygons (shapely, one CRS).
        mapped: mapped polygons (same CRS).
        iou_threshold: ``t``.
    """
    r_iou, r_partners = _side_iou(reference, mapped)
    m_iou, m_partners = _side_iou(mapped, reference)
    return ObjectMatch(r_iou, m_iou, r_partners, m_partners, float(iou_threshold))


def size_class_names(edges: Sequence[float], unit: str) -> list[str]:
    """Names of the size classes cut at ``edges`` (ascending): ``< e0``, ``e0-e1``, ..., ``>= en``."""
    names = [f'< {edges[0]:g} {unit}'] if edges else ['all']
    names += [f'{a:g}-{b:g} {unit}' for a, b in itertools.pairwise(edges)]
    return names + ([f'>= {edges[-1]:g} {unit}'] if edges else [])


def _ratio(a: float, b: float) -> float:
    return a / b if b else float('nan')


def object_scores(
    found: np.ndarray,
    reference_area: np.ndarray,
    true: np.ndarray,
    mapped_area: np.ndarray,
    edges: Sequence[float] = (),
    unit: str = 'm²',
) -> dict[str, Any]:
    """Object recall, precision, F1, counts and areas, overall and per size class.

    Args:
        found: ``(R,)`` bool per reference landslide.
        reference_area: ``(R,)`` their areas (``unit``).
        true: ``(M,)`` bool per mapped polygon.
        mapped_area: ``(M,)`` their areas.
        edges: size-class edges (ascending, ``unit``).
        unit: unit of the areas.

    Returns:
        ``{'reference': R, 'found': .., 'missed': .., 'mapped': M, 'true': .., 'false': .., 'recall': ..,
        'precision': .., 'f1': .., 'size_classes': [{'class', 'reference', 'found', 'recall', 'mapped', 'true',
        'precision', 'f1'}, ...]}``.
    """

    def scores(f: np.ndarray, t: np.ndarray) -> dict[str, Any]:
        recall, precision = _ratio(f.sum(), len(f)), _ratio(t.sum(), len(t))
        f1 = 2 * recall * precision / (recall + precision) if recall + precision > 0 else float('nan')
        if recall == 0 and precision == 0:
            f1 = 0.0
        return {'reference': len(f), 'found': int(f.sum()), 'missed': int(len(f) - f.sum()),
                'mapped': len(t), 'true': int(t.sum()), 'false': int(len(t) - t.sum()),
                'recall': recall, 'precision': precision, 'f1': f1}  # fmt: skip

    out = scores(np.asarray(found, bool), np.asarray(true, bool))
    bins_r = np.digitize(reference_area, edges) if len(edges) else np.zeros(len(found), int)
    bins_m = np.digitize(mapped_area, edges) if len(edges) else np.zeros(len(true), int)
    out['size_classes'] = [
        {'class': name, **scores(np.asarray(found, bool)[bins_r == k], np.asarray(true, bool)[bins_m == k])}
        for k, name in enumerate(size_class_names(list(edges), unit))
    ]
    return out
