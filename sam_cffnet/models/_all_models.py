"""Imports every module that registers a model (keep this list in sync when adding a model file)."""

from . import (
    hpcl,  # noqa: F401
    sam_cffnet,  # noqa: F401
)
from .baselines import attention_unet, deeplabv3plus, hrnet, segformer  # noqa: F401
from .sam_ablations import SAMASPPNet, SAMLawinNet, SAMMaskDecoderNet, SAMPSPNet  # noqa: F401
from .translandseg import TransLandSeg  # noqa: F401
