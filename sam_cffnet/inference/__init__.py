"""Whole-scene inference: streaming sliding-window landslide mapping of georeferenced rasters.

``python -m sam_cffnet map --checkpoint CKPT --input scene.tif --output landslides.tif`` or :func:`map_scene`.
"""

from .scene import (
    PROBABILITY_SCALE,
    InputRasterError,
    apply_preprocessing,
    load_mapping_model,
    map_scene,
    normalize_dem,
    reference_preprocessing,
    resolve_input_bands,
    vectorize_mask,
    window_weight,
)

__all__ = [
    'PROBABILITY_SCALE',
    'InputRasterError',
    'apply_preprocessing',
    'load_mapping_model',
    'map_scene',
    'normalize_dem',
    'reference_preprocessing',
    'resolve_input_bands',
    'vectorize_mask',
    'window_weight',
]
