"""Whole-scene and region-scale landslide mapping: streaming, multi-device (Lightning), resumable.

``python -m sam_cffnet map --checkpoint CKPT --input scene.tif --output map.tif`` (:mod:`.cli`), or
:func:`map_scenes` / :func:`map_scene`. One concept per module:

* :mod:`.windows`: window planning, blocks and blending (pure numpy, no I/O);
* :mod:`.raster`: scene headers, window reads, block files, VRTs and COGs (rasterio);
* :mod:`.polygons`: polygon extraction, merging across block seams, GeoPackage/GeoJSON output;
* :mod:`.model`: model loading, :func:`window_inputs` (the training pipeline as it is), the LightningModule;
* :mod:`.data`: chunks of windows read by DataLoader workers, the LightningDataModule;
* :mod:`.writer`: blending and writing on a background thread (a Lightning callback), the progress bar;
* :mod:`.state`: the state folder that makes runs resumable;
* :mod:`.assemble`: a scene's COG, polygons and summary from its blocks; mosaics;
* :mod:`.params`: the parameters object (:class:`MapParams`) and what identifies a run;
* :mod:`.runner`: the run (:class:`MappingRun`) on ``Trainer.predict``.
"""

from .model import MappingModel, MappingModule, load_mapping_model, window_inputs
from .params import MapParams
from .polygons import vectorize_mask
from .raster import InputRasterError, OutputWriteError
from .runner import MappingRun, map_scene, map_scenes
from .signals import MappingStopped
from .windows import NODATA, PROBABILITY_SCALE, BlockBlender, ScenePlan, window_weight

__all__ = [
    'NODATA',
    'PROBABILITY_SCALE',
    'BlockBlender',
    'InputRasterError',
    'MapParams',
    'MappingModel',
    'MappingModule',
    'MappingRun',
    'MappingStopped',
    'OutputWriteError',
    'ScenePlan',
    'load_mapping_model',
    'map_scene',
    'map_scenes',
    'vectorize_mask',
    'window_inputs',
    'window_weight',
]
