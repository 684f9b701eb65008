#!/usr/bin/env python3
"""Write a tiny fake Bijie dataset in the exact original layout (fixed seed).

``Bijie-landslide-dataset/landslide/{image,mask,dem}/*.png`` and ``non-landslide/{image,dem}/*.png``: RGB uint8
chips of varied sizes, 0/255 masks, 16-bit DEMs on a half-resolution grid. Run as a script to write into
``./data`` next to this file; tests call :func:`make_bijie` with a temporary folder.
"""

from pathlib import Path

import numpy as np
from PIL import Image

SIZES_LS = [(20, 24), (33, 28), (40, 40), (48, 36), (26, 30), (36, 44)]
SIZES_NLS = [(30, 26), (44, 40), (24, 20), (38, 34)]


def make_bijie(root: Path, dem: bool = True, nested: bool = True, seed: int = 0) -> Path:
    """Write the fake dataset; returns the folder to pass as ``root`` (the parent when ``nested``)."""
    rng = np.random.default_rng(seed)
    base = Path(root) / 'Bijie-landslide-dataset' if nested else Path(root)
    for category, sizes, prefix in (('landslide', SIZES_LS, 'df'), ('non-landslide', SIZES_NLS, 'fyb')):
        for i, (h, w) in enumerate(sizes):
            name = f'{prefix}{i + 1:03d}.png'
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            (base / category / 'image').mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(base / category / 'image' / name)
            if category == 'landslide':
                mask = np.zeros((h, w), np.uint8)
                mask[h // 4 : h // 2, w // 4 : w // 2] = 255
                (base / category / 'mask').mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(base / category / 'mask' / name)
            if dem:
                d = rng.integers(1000, 1600, (h // 2, w // 2)).astype(np.uint16)
                (base / category / 'dem').mkdir(parents=True, exist_ok=True)
                Image.fromarray(d).save(base / category / 'dem' / name)
    return Path(root)


if __name__ == '__main__':
    make_bijie(Path(__file__).parent / 'data')
