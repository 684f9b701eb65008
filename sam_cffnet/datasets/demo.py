"""Synthetic landslide-like data in the exact Bijie layout (no download needed; used by the README demo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .utils import PathLike

__all__ = ['make_demo_bijie']


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled bicubically to ``h x w``."""
    gh, gw = max(2, h // cells), max(2, w // cells)
    coarse = Image.fromarray((rng.random((gh, gw)) * 255).astype(np.uint8))
    return np.asarray(coarse.resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0


def _chip(rng: np.random.Generator, h: int, w: int, landslide: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One RGB chip (H, W, 3) uint8, its 0/255 mask (H, W) and a DEM (H/2, W/2) uint16."""
    veg = _smooth_noise(rng, h, w, 24) * 0.6 + _smooth_noise(rng, h, w, 6) * 0.4
    soil = _smooth_noise(rng, h, w, 40)
    # vegetation: dark green; patches of brown fields
    r = 45 + 50 * veg + 40 * (soil > 0.7)
    g = 70 + 60 * veg + 15 * (soil > 0.7)
    b = 40 + 35 * veg
    mask = np.zeros((h, w), dtype=bool)
    if landslide:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        edge = _smooth_noise(rng, h, w, 10)
        for _ in range(int(rng.integers(1, 3))):
            cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
            ry, rx = rng.uniform(0.12, 0.3) * h, rng.uniform(0.06, 0.18) * w
            ang = rng.uniform(0, np.pi)
            dy, dx = yy - cy, xx - cx
            u = (dy * np.cos(ang) + dx * np.sin(ang)) / ry
            v = (-dy * np.sin(ang) + dx * np.cos(ang)) / rx
            mask |= (u**2 + v**2) < (0.7 + 0.6 * edge)  # irregular boundary
        scar = 150 + 60 * _smooth_noise(rng, h, w, 5)
        r = np.where(mask, scar + 20, r)
        g = np.where(mask, scar, g)
        b = np.where(mask, scar - 25, b)
    rgb = np.stack([r, g, b], -1) + rng.normal(0, 4, (h, w, 3))
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    dh, dw = max(2, h // 2), max(2, w // 2)
    dem = 1200 + 300 * _smooth_noise(rng, dh, dw, 8) + np.linspace(0, 80, dw)[None, :]
    return rgb, (mask * 255).astype(np.uint8), dem.astype(np.uint16)


def make_demo_bijie(
    root: PathLike,
    num_landslide: int = 24,
    num_non_landslide: int = 12,
    size_range: tuple[int, int] = (96, 160),
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a small synthetic Bijie-like dataset in the original layout.

    Layout written under ``root/Bijie-landslide-dataset/``: ``landslide/{image,mask,dem}/dfNNN.png`` and
    ``non-landslide/{image,dem}/nlNNNNN.png``. Images are RGB uint8 vegetation-like textures (green/brown) with
    bright irregular bare-soil scars on landslide chips; masks are 0/255 and match the scars; DEMs are 16-bit
    PNGs on a half-resolution grid (like the real data's coarser DEM grid). Chip sizes vary in ``size_range``.

    Files that already exist are kept unless ``overwrite=True`` (the call is then nearly free).

    Args:
        root: Output folder (created if needed).
        num_landslide: Number of landslide chips (with masks).
        num_non_landslide: Number of non-landslide chips (no masks, as in the real data).
        size_range: Inclusive range of chip heights/widths in pixels.
        seed: Random seed (same seed -> same files).
        overwrite: Rewrite files that already exist.

    Returns:
        The dataset root ``root/Bijie-landslide-dataset`` (usable as ``Bijie(root=...)``).
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / 'Bijie-landslide-dataset'
    jobs = [('landslide', f'df{i + 1:03d}.png', True) for i in range(num_landslide)]
    jobs += [('non-landslide', f'nl{10001 + i}.png', False) for i in range(num_non_landslide)]
    for category, name, landslide in jobs:
        h, w = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
        sub_seed = int(rng.integers(2**31))
        folder = base / category
        targets = [folder / 'image' / name, folder / 'dem' / name] + ([folder / 'mask' / name] if landslide else [])
        if not overwrite and all(t.exists() for t in targets):
            continue
        rgb, mask, dem = _chip(np.random.default_rng(sub_seed), h, w, landslide)
        arrays = {'image': rgb, 'dem': dem, 'mask': mask}
        for t in targets:
            if t.exists() and not overwrite:
                continue
            t.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arrays[t.parent.name]).save(t, compress_level=1)
    return base
