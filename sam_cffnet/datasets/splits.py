"""Seeded, optionally stratified random splits of indexed items (chips, patches, blocks of a grid)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ['split_indices']


def split_indices(n: int, ratios: Sequence[float], seed: int, groups: Sequence[Any] | None = None) -> list[list[int]]:
    """Seeded random split of ``range(n)`` into parts with the given ratios (stratified by ``groups``).

    Args:
        n: Number of items.
        ratios: Non-negative ratios, one per part (normalized to sum 1).
        seed: Seed of the numpy generator (same seed -> same split).
        groups: Optional label per item; each group is split with the same ratios (stratified split).

    Returns:
        One sorted index list per part; parts are disjoint and cover ``range(n)``.
    """
    r = np.asarray(ratios, dtype=float)
    if (r < 0).any() or r.sum() <= 0:
        raise ConfigError(f'split ratios must be >= 0 with a positive sum, got {list(ratios)}')
    r = r / r.sum()
    rng = np.random.default_rng(seed)
    labels = list(groups) if groups is not None else [0] * n
    parts: list[list[int]] = [[] for _ in r]
    for g in sorted(set(labels), key=str):
        idx = np.array([i for i in range(n) if labels[i] == g])
        idx = idx[rng.permutation(len(idx))]
        bounds = np.round(np.cumsum(r) * len(idx)).astype(int)
        start = 0
        for k, end in enumerate(bounds):
            parts[k].extend(idx[start:end].tolist())
            start = end
    return [sorted(p) for p in parts]
