"""Models: plain ``nn.Module``s, no Lightning, files or datasets (see :mod:`sam_cffnet.models.base`).

Importing this package imports every model module, which registers each model in :mod:`.registry` (timm's way:
the registry itself imports no model file).
"""

from .base import LandslideModel, count_parameters
from .baselines.attention_unet import AttentionUNet
from .baselines.deeplabv3plus import DeepLabV3Plus
from .baselines.hrnet import HRNet
from .baselines.segformer import SegFormer
from .decoders.cffd import CFFD
from .encoders.sam import SAM_VARIANTS, BlockInjector, SAMEncoder
from .hpcl.model import HPCLNet
from .registry import build_model, build_model_from_config, get_model_class, list_models, model_table, register_model
from .sam_ablations import SAMASPPNet, SAMLawinNet, SAMMaskDecoderNet, SAMPSPNet
from .sam_cffnet import SAMCFFNet
from .sam_segmenter import SAMSegmenter
from .translandseg import TransLandSeg

__all__ = [
    'CFFD',
    'SAM_VARIANTS',
    'AttentionUNet',
    'BlockInjector',
    'DeepLabV3Plus',
    'HPCLNet',
    'HRNet',
    'LandslideModel',
    'SAMASPPNet',
    'SAMCFFNet',
    'SAMEncoder',
    'SAMLawinNet',
    'SAMMaskDecoderNet',
    'SAMPSPNet',
    'SAMSegmenter',
    'SegFormer',
    'TransLandSeg',
    'build_model',
    'build_model_from_config',
    'count_parameters',
    'get_model_class',
    'list_models',
    'model_table',
    'register_model',
]
