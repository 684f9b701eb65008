"""Synthetic landslide-like data in the exact layouts of Bijie, Landslide4Sense and GVLM (no download needed).

Used by the README demo (:func:`make_demo_bijie`) and by ``python -m sam_cffnet reproduce --dry-run``
(all three). The imagery is a vegetation-like texture with bright, irregular bare-soil scars where the masks say
"landslide", so a model can learn something in an epoch; the numbers it reaches say nothing about real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .files import PathLike
from .landslide4sense import Landslide4Sense

__all__ = ['DEMO_GVLM_SITES', 'make_demo_bijie', 'make_demo_gvlm', 'make_demo_landslide4sense']


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


def make_demo_landslide4sense(
    root: PathLike,
    num_train: int = 24,
    num_val: int = 8,
    num_test: int = 8,
    size: int = 128,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a small synthetic Landslide4Sense-like dataset in the official (Zenodo) layout.

    Layout written under ``root``: ``{TrainData,ValidData,TestData}/img/image_N.h5`` (key ``img``, ``size`` x
    ``size`` x 14 float64, HWC) and ``.../mask/mask_N.h5`` (key ``mask``, ``size`` x ``size`` uint8 0/1) for every
    split (the Zenodo release has masks for all three). Numbering is 1-based and not zero-padded, as the real files.
    The RGB bands B4, B3, B2 hold the synthetic RGB scaled to the real files' range (``rgb / 255 * 10``, so the
    reference normalization ``clip(img / 10, 0, 1)`` gives back ``rgb / 255``); the other bands, slope and DEM are
    smooth noise around 1.

    Files that already exist are kept unless ``overwrite=True``.

    Args:
        root: Output folder (created if needed).
        num_train: Patches in ``TrainData``.
        num_val: Patches in ``ValidData``.
        num_test: Patches in ``TestData``.
        size: Patch edge in pixels (real data: 128).
        seed: Random seed (same seed -> same files).
        overwrite: Rewrite files that already exist.

    Returns:
        ``root`` (usable as ``Landslide4Sense(root=...)``).
    """
    import h5py

    rng = np.random.default_rng(seed)
    rgb_index = [Landslide4Sense.all_bands.index(b) for b in Landslide4Sense.rgb_bands]  # B4, B3, B2
    for folder, count in (('TrainData', num_train), ('ValidData', num_val), ('TestData', num_test)):
        for i in range(1, count + 1):
            sub_seed = int(rng.integers(2**31))
            landslide = bool(rng.random() < 0.75)
            img_path = Path(root) / folder / 'img' / f'image_{i}.h5'
            mask_path = Path(root) / folder / 'mask' / f'mask_{i}.h5'
            if not overwrite and img_path.exists() and mask_path.exists():
                continue
            sub = np.random.default_rng(sub_seed)
            rgb, mask, _ = _chip(sub, size, size, landslide)
            bands = np.stack([0.6 + 0.8 * _smooth_noise(sub, size, size, 8) for _ in Landslide4Sense.all_bands], -1)
            for k, b in enumerate(rgb_index):
                bands[..., b] = rgb[..., k] / 255.0 * 10.0
            for path, key, data in ((img_path, 'img', bands.astype(np.float64)), (mask_path, 'mask', mask // 255)):
                path.parent.mkdir(parents=True, exist_ok=True)
                with h5py.File(path, 'w') as f:
                    f.create_dataset(key, data=data)
    return Path(root)


#: Site folders of the demo GVLM scenes (real GVLM site names) and their (height, width).
DEMO_GVLM_SITES: dict[str, tuple[int, int]] = {
    'A Luoi_Vietnam': (200, 260),
    'Big Sur_United States': (176, 176),
    'Kupang_Indonesia': (150, 220),
    'Shimen_China': (190, 170),
}


def make_demo_gvlm(
    root: PathLike,
    sites: dict[str, tuple[int, int]] | None = None,
    scars_per_10k_pixels: float = 1.5,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a small synthetic GVLM-like dataset (object-extraction version) in the original layout.

    Layout written under ``root``: ``GVLM_Object_Extraction/<Site>/im.png`` (RGB uint8) and ``ref.png`` (L uint8,
    0/255), one scene per site (site names contain spaces, as the real ones). Scene sizes are deliberately not
    multiples of common tile sizes, so tilings have edge tiles. Each scene is a vegetation-like texture with
    several landslide scars.

    Files that already exist are kept unless ``overwrite=True``.

    Args:
        root: Output folder (created if needed).
        sites: Site name -> (height, width); default :data:`DEMO_GVLM_SITES`.
        scars_per_10k_pixels: Density of landslide scars (at least one per scene).
        seed: Random seed (same seed -> same files).
        overwrite: Rewrite files that already exist.

    Returns:
        ``root`` (usable as ``GVLM(root=...)``).
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / 'GVLM_Object_Extraction'
    for site, (h, w) in (sites or DEMO_GVLM_SITES).items():
        sub_seed = int(rng.integers(2**31))
        im, ref = base / site / 'im.png', base / site / 'ref.png'
        if not overwrite and im.exists() and ref.exists():
            continue
        sub = np.random.default_rng(sub_seed)
        rgb, _, _ = _chip(sub, h, w, False)
        mask = np.zeros((h, w), dtype=np.uint8)
        cell = 96  # each scar is drawn as a landslide chip of at most cell x cell pixels pasted into the scene
        for _ in range(max(1, round(scars_per_10k_pixels * h * w / 1e4))):
            ch, cw = int(sub.integers(48, cell + 1)), int(sub.integers(48, cell + 1))
            r0, c0 = int(sub.integers(0, max(1, h - ch))), int(sub.integers(0, max(1, w - cw)))
            chip_rgb, chip_mask, _ = _chip(sub, min(ch, h), min(cw, w), True)
            scar = chip_mask > 0
            window = (slice(r0, r0 + scar.shape[0]), slice(c0, c0 + scar.shape[1]))
            rgb[window][scar] = chip_rgb[scar]
            mask[window][scar] = 255
        im.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(im, compress_level=1)
        Image.fromarray(mask).save(ref, compress_level=1)
    return Path(root)
