#!/usr/bin/env python3
"""Write a tiny fake GVLM (object-extraction) dataset in the exact layout (fixed seed).

``GVLM_Object_Extraction/<Site>/{im.png, ref.png}`` with site names containing spaces, RGB uint8 scenes of
different sizes (one smaller than a 32 px tile) and 0/255 reference maps. Run as a script to write into ``./data``
next to this file; tests call :func:`make_gvlm` with a temporary folder.
"""

from pathlib import Path

import numpy as np
from PIL import Image

SITES = {
    'A Luoi_Vietnam': (70, 90),
    'Big Sur_United States': (64, 64),
    'Kupang_Indonesia': (40, 75),
    'Shimen_China': (96, 50),
    'Taitung_China': (24, 28),
}


def make_gvlm(root: Path, sites: dict[str, tuple[int, int]] | None = None, seed: int = 0) -> Path:
    """Write the fake dataset under ``root`` and return ``root``."""
    rng = np.random.default_rng(seed)
    base = Path(root) / 'GVLM_Object_Extraction'
    for site, (h, w) in (sites or SITES).items():
        (base / site).mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref = np.zeros((h, w), np.uint8)
        ref[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = 255
        Image.fromarray(img).save(base / site / 'im.png')
        Image.fromarray(ref).save(base / site / 'ref.png')
    return Path(root)


if __name__ == '__main__':
    make_gvlm(Path(__file__).parent / 'data')
