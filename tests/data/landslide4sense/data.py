#!/usr/bin/env python3
"""Write a tiny fake Landslide4Sense dataset in the official layout (fixed seed).

``TrainData/{img,mask}``, ``ValidData/{img[,mask]}``, ``TestData/img``; ``image_N.h5`` holds ``img``
(H, W, 14) float64 (values ~0..4 like the real pre-scaled bands), ``mask_N.h5`` holds ``mask`` (H, W) uint8 0/1.
Numbering is 1-based and not zero-padded (``image_10`` must sort after ``image_9``). Run as a script to write into
``./data`` next to this file; tests call :func:`make_l4s` with a temporary folder.
"""

from pathlib import Path

import h5py
import numpy as np


def make_l4s(
    root: Path,
    n_train: int = 10,
    n_val: int = 3,
    n_test: int = 2,
    size: int = 16,
    val_masks: bool = True,
    test_masks: bool = False,
    seed: int = 0,
) -> Path:
    """Write the fake dataset under ``root`` and return ``root``."""
    rng = np.random.default_rng(seed)
    for folder, n, masks in (('TrainData', n_train, True), ('ValidData', n_val, val_masks),
                             ('TestData', n_test, test_masks)):  # fmt: skip
        (Path(root) / folder / 'img').mkdir(parents=True, exist_ok=True)
        if masks:
            (Path(root) / folder / 'mask').mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            img = rng.uniform(0.1, 4.0, (size, size, 14))
            img[..., 0] = i  # band B1 encodes the file number (lets tests check the numeric order)
            with h5py.File(Path(root) / folder / 'img' / f'image_{i}.h5', 'w') as f:
                f.create_dataset('img', data=img)
            if masks:
                m = (rng.random((size, size)) > 0.8).astype(np.uint8)
                with h5py.File(Path(root) / folder / 'mask' / f'mask_{i}.h5', 'w') as f:
                    f.create_dataset('mask', data=m)
    return Path(root)


if __name__ == '__main__':
    make_l4s(Path(__file__).parent / 'data')
