"""Whole-scene inference: streaming sliding-window landslide mapping of georeferenced rasters.

``python -m sam_cffnet map --checkpoint CKPT --input scene.tif --output landslides.tif`` or :func:`map_scene`.
"""

from .scene import (
    PROBABILITY_SCALE,
    InputRasterError,
    load_mapping_model,
    map_scene,
    vectorize_mask,
    window_inputs,
    window_weight,
)

__all__ = [
    'PROBABILITY_SCALE',
    'InputRasterError',
    'load_mapping_model',
    'map_scene',
    'vectorize_mask',
    'window_inputs',
    'window_weight',
]
