"""HPCL-Net (Zhou et al., arXiv 2308.01251), reconstructed from its abstract.

Optical + DEM fusion in feature space on the frozen SAM encoder, with hyper-pixel-wise contrastive learning (momentum
encoder, per-class global queues).

One concept per file: :mod:`.terrain` (slope/aspect/hillshade), :mod:`.dem_branch`, :mod:`.fusion`,
:mod:`.hyperpixel`, :mod:`.contrastive` (queues, EMA, InfoNCE) and :mod:`.model` (``HPCLNet``, registered as
``hpcl_net``).
"""

from .contrastive import ClassQueues, ema_update, gather_keys, hyperpixel_infonce
from .dem_branch import DEMBranch
from .fusion import FUSION_MODES, ConcatFusion, GatedFusion, build_fusion
from .hyperpixel import HyperPixelizer, HyperPixels, boundary_band, sample_hyperpixels, slic_superpixels
from .model import HPCLNet
from .terrain import TERRAIN_FEATURES, terrain_channels, terrain_gradients, terrain_stack

__all__ = [
    'FUSION_MODES',
    'TERRAIN_FEATURES',
    'ClassQueues',
    'ConcatFusion',
    'DEMBranch',
    'GatedFusion',
    'HPCLNet',
    'HyperPixelizer',
    'HyperPixels',
    'boundary_band',
    'build_fusion',
    'ema_update',
    'gather_keys',
    'hyperpixel_infonce',
    'sample_hyperpixels',
    'slic_superpixels',
    'terrain_channels',
    'terrain_gradients',
    'terrain_stack',
]
