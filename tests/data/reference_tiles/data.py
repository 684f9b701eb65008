#!/usr/bin/env python3
"""Write tiny fake tiles in the SAM-CFFNet authors' H5 format (fixed seed).

``<root>/{train,val}/<name>.h5`` with ``image`` (H, W, 3) uint8 and ``label`` (H, W) uint8 in {0, 255} (plus a
few values near the 128 threshold to check the ``> 128`` binarization). Run as a script to write into ``./data``
next to this file; tests call :func:`make_reference_tiles` with a temporary folder.
"""

from pathlib import Path

import h5py
import numpy as np


def make_reference_tiles(root: Path, n_train: int = 6, n_val: int = 3, size: int = 32, seed: int = 0) -> Path:
    """Write the fake tiles under ``root`` and return ``root``."""
    rng = np.random.default_rng(seed)
    for split, n in (('train', n_train), ('val', n_val)):
        (Path(root) / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            label = np.zeros((size, size), np.uint8)
            label[: size // 2] = 255
            label[0, 0], label[0, 1] = 128, 129  # 128 -> 0, 129 -> 1 (reference: label > 128)
            with h5py.File(Path(root) / split / f'tra_GVLM_{i}_{i * 7}.h5', 'w') as f:
                f.create_dataset('image', data=img)
                f.create_dataset('label', data=label)
    return Path(root)


if __name__ == '__main__':
    make_reference_tiles(Path(__file__).parent / 'data')
