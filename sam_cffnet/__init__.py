"""sam_cffnet: SAM-based landslide segmentation (SAM-CFFNet, TransLandSeg, HPCL-Net) with PyTorch Lightning."""

from .models import SAMCFFNet, build_model, list_models

__version__ = '0.1.0'
__all__ = ['SAMCFFNet', '__version__', 'build_model', 'list_models']
