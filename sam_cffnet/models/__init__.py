"""Models: plain ``nn.Module``s, no Lightning, files or datasets (see :mod:`sam_cffnet.models.base`)."""

from .base import LandslideModel, count_parameters
from .decoders.cffd import CFFD
from .encoders.sam import SAM_VARIANTS, BlockInjector, SAMEncoder
from .registry import build_model, get_model_class, list_models, register_model
from .sam_cffnet import SAMCFFNet, SAMSegmenter

__all__ = [
    'CFFD',
    'SAM_VARIANTS',
    'BlockInjector',
    'LandslideModel',
    'SAMCFFNet',
    'SAMEncoder',
    'SAMSegmenter',
    'build_model',
    'count_parameters',
    'get_model_class',
    'list_models',
    'register_model',
]
